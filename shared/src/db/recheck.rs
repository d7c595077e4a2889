//! When ending sessions re-checks the server: after short waits that grow from 1 ms to a low ceiling, until
//! a deadline. Both engines follow it, on the writer and on every reader.
//!
//! One terminated session is gone within a millisecond or two, but many at once are gone only when the
//! server has torn them all down: on PostgreSQL a process each, about 2 ms of CPU (mostly the exit handlers'
//! copy-on-write page faults), so 100 sessions take ~100 ms on 2 cores. The ceiling keeps the last re-check
//! at most that far behind the moment the last session is gone (with a ceiling of 100 ms, a kill that took
//! 70 ms was answered after 127 ms); each re-check is one cheap query. The deadline bounds a delivery whose
//! sessions will not end: what is left is then reported as remaining, and the delivery retried.

use std::time::{Duration, Instant};

/// The first wait.
const FIRST: Duration = Duration::from_millis(1);
/// The longest wait between two re-checks.
const CEILING: Duration = Duration::from_millis(8);
/// How long sessions are re-checked before the ones left are reported as remaining.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// How long after the kill began a check that finds no session is believed. A login that passed the
/// server's LOGIN check just before the revocation committed is still starting: its session shows in the
/// session view only when its backend has finished (a millisecond or two later on PostgreSQL; a MySQL
/// connection is listed under its account only once authenticated).
const SETTLE: Duration = Duration::from_millis(5);

/// The waits between re-checks of one kill.
#[derive(Debug)]
pub struct Recheck {
    next: Duration,
    started: Instant,
    deadline: Instant,
}

impl Recheck {
    /// Starts now, ending [`DEADLINE`] from now.
    pub fn start() -> Self {
        let now = Instant::now();
        Self::between(now, now + DEADLINE)
    }

    fn between(started: Instant, deadline: Instant) -> Self {
        Self {
            next: FIRST,
            started,
            deadline,
        }
    }

    /// Whether a check now that finds no session is believed (see [`SETTLE`]).
    pub fn settled(&self) -> bool {
        self.settled_at(Instant::now())
    }

    /// Sleeps until a check that finds no session is believed: the one check after it confirms.
    pub async fn settle(&self) {
        tokio::time::sleep_until((self.started + SETTLE).into()).await;
    }

    fn settled_at(&self, now: Instant) -> bool {
        now >= self.started + SETTLE
    }

    /// Sleeps before the next re-check; `false` (without sleeping) when that would pass the deadline.
    pub async fn wait(&mut self) -> bool {
        match self.next_wait(Instant::now()) {
            Some(wait) => {
                tokio::time::sleep(wait).await;
                true
            }
            None => false,
        }
    }

    /// The wait before the next re-check at `now`, or `None` when it would end past the deadline.
    fn next_wait(&mut self, now: Instant) -> Option<Duration> {
        let wait = self.next;
        if now + wait > self.deadline {
            return None;
        }
        self.next = (wait * 2).min(CEILING);
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_one_millisecond_up_to_the_ceiling() {
        let start = Instant::now();
        let mut recheck = Recheck::between(start, start + DEADLINE);
        let waits: Vec<u128> = (0..7)
            .map(|_| {
                recheck
                    .next_wait(start)
                    .expect("before the deadline")
                    .as_millis()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8, 8]);
    }

    #[test]
    fn no_wait_ends_past_the_deadline() {
        let start = Instant::now();
        let mut recheck = Recheck::between(start, start + Duration::from_millis(20));
        let mut now = start;
        let mut total = Duration::ZERO;
        while let Some(wait) = recheck.next_wait(now) {
            now += wait;
            total += wait;
        }
        // 1 + 2 + 4 + 8 = 15; the next 8 would end at 23 ms.
        assert_eq!(total, Duration::from_millis(15));
        assert!(recheck.next_wait(start + DEADLINE).is_none());
    }

    #[test]
    fn no_session_is_believed_only_once_a_login_begun_before_the_kill_would_show() {
        let start = Instant::now();
        let recheck = Recheck::between(start, start + DEADLINE);
        assert!(!recheck.settled_at(start));
        assert!(!recheck.settled_at(start + Duration::from_millis(3)));
        assert!(recheck.settled_at(start + SETTLE));
        // With waits of 1, 2, 4 ms, the first check believed comes 7 ms after the kill began.
        let mut at = start;
        let mut recheck = Recheck::between(start, start + DEADLINE);
        while !recheck.settled_at(at) {
            at += recheck.next_wait(at).expect("before the deadline");
        }
        assert_eq!(at - start, Duration::from_millis(7));
    }

    #[test]
    fn the_whole_deadline_is_used_at_the_ceiling_pace() {
        let start = Instant::now();
        let mut recheck = Recheck::between(start, start + DEADLINE);
        let mut now = start;
        let mut checks = 0;
        while let Some(wait) = recheck.next_wait(now) {
            now += wait;
            checks += 1;
        }
        assert!(now <= start + DEADLINE && now + CEILING > start + DEADLINE);
        // About 2 s / 8 ms re-checks: bounded, one cheap query each.
        assert!((240..=260).contains(&checks), "{checks} re-checks");
    }
}
