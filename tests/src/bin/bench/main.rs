//! `make bench`: the release okta-hook binary, side by side with the Python peer a user would write instead
//! (`tests/peers/python-naive`), each through its own Lambda Runtime API emulator, against the throwaway
//! TLS PostgreSQL (SCRAM) and MariaDB and moto.
//!
//! - cold start: process start to the first answer (the verification GET), and the first delivery after it;
//! - warm deliveries of 1, 10 and 100 onboarding events (ours and the peer's, interleaved), offboarding and
//!   an already-seen delivery (ours only: the peer does neither);
//! - peak RSS (VmHWM) of each warm process;
//! - revocation: receipt of a deactivation to zero sessions, PostgreSQL and MariaDB, and PostgreSQL's own
//!   floor for the same sessions;
//! - the reconcile of 10,000 users;
//! - the goals of issue 10, judged on this run.
//!
//! Usage: bench [path/to/okta-hook] [iterations (default 20)]

mod function;
mod goals;
mod peer;
mod reconcile;
mod revocation;
mod stats;

use std::path::Path;
use std::time::{Duration, Instant};

use okta_rds_sync_tests::okta::{User, delivery, event, request_event_json, sample};
use okta_rds_sync_tests::{READERS_GROUP, TestEnv, function_binary, function_env, servers};

use function::{Function, assert_applied};
use goals::Goal;
use peer::Peer;
use stats::Summary;

/// Who answers: okta-hook or the peer.
#[derive(Clone, Copy, PartialEq)]
enum Who {
    Ours,
    Peer,
}

impl Who {
    /// A label for ids and logins (Okta ids are alphanumeric).
    fn label(self) -> &'static str {
        match self {
            Who::Ours => "ours",
            Who::Peer => "peer",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Who::Ours => "okta-hook",
            Who::Peer => "peer",
        }
    }
}

/// A delivery onboarding `size` new users into the readers group; returns the request and the logins.
fn onboarding(env: &TestEnv, who: Who, tag: &str, size: usize) -> (String, Vec<User>) {
    let users: Vec<User> = (0..size)
        .map(|j| {
            User::new(
                &format!("00u{}{tag}x{j}", who.label()),
                &env.login(&format!("{}.{tag}.{j}", who.label())),
            )
        })
        .collect();
    let events = users
        .iter()
        .enumerate()
        .map(|(j, u)| {
            event(
                "group.user_membership.add",
                Some(u),
                Some((READERS_GROUP, "r")),
                10,
                &format!("on-{}-{tag}-{j}", who.label()),
            )
        })
        .collect();
    let id = format!("on-{}-{tag}", who.label());
    (request_event_json(&delivery(&id, events)), users)
}

/// How many of `users` are members of the read-only role: both sides must have done the work measured.
/// `checker` is one kept superuser connection: a connection per check would leave a backend exiting
/// (a millisecond of CPU on this 2-core machine) under whichever delivery comes next.
async fn onboarded(env: &TestEnv, checker: &tokio_postgres::Client, users: &[User]) -> usize {
    let logins: Vec<String> = users.iter().map(|u| u.login.clone()).collect();
    let n: i64 = checker
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_auth_members m
             JOIN pg_catalog.pg_roles r ON r.oid = m.member
             JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
             WHERE g.rolname = $1 AND r.rolname = ANY($2)",
            &[&env.readonly_role, &logins],
        )
        .await
        .expect("count members")
        .get(0);
    n as usize
}

struct ColdStarts {
    to_answer: Summary,
    first_delivery: Summary,
}

/// Waits until `user` has no session left: a function's backend exits after the function (about 2 ms of
/// CPU on this machine), which would otherwise land on the next sample, ours or the peer's.
async fn sessions_gone(checker: &tokio_postgres::Client, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if revocation::pg_sessions(checker, &[user.to_owned()]).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{user}'s sessions did not end");
}

/// One side of the cold-start comparison: which function, its program and its environment.
struct Side<'a> {
    who: Who,
    program: &'a Path,
    vars: &'a [(&'a str, String)],
}

/// A new process per sample, ours and the peer's in turn so that both see the same machine (its speed
/// drifts by half within minutes): process start to the challenge's answer, then a one-event delivery.
async fn cold_starts(
    sides: [Side<'_>; 2],
    env: &TestEnv,
    checker: &tokio_postgres::Client,
    iterations: usize,
) -> [ColdStarts; 2] {
    let mut samples: [(Vec<Duration>, Vec<Duration>); 2] = Default::default();
    for i in 0..iterations {
        for (side, (to_answer, first)) in sides.iter().zip(samples.iter_mut()) {
            let started = Instant::now();
            let function = Function::spawn(side.program, side.vars)
                .await
                .expect("start");
            function.invoke(&sample("challenge")).await;
            to_answer.push(started.elapsed());
            let (request, users) = onboarding(env, side.who, &format!("cold{i}"), 1);
            let (took, body) = function.invoke(&request).await;
            if side.who == Who::Ours {
                assert_applied(&body, 1);
            }
            assert_eq!(
                onboarded(env, checker, &users).await,
                1,
                "{} cold {i}",
                side.who.title()
            );
            first.push(took);
            drop(function);
            sessions_gone(checker, &env.master).await;
        }
    }
    let mut summaries = sides
        .iter()
        .zip(samples)
        .map(|(side, (to_answer, first))| ColdStarts {
            to_answer: Summary::print(
                &format!("{}: cold start -> first answer", side.who.title()),
                to_answer,
            ),
            first_delivery: Summary::print(
                &format!("{}: first delivery after cold start", side.who.title()),
                first,
            ),
        });
    let ours = summaries.next().expect("ours");
    let peer = summaries.next().expect("peer");
    [ours, peer]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let binary = function_binary("release")?;
    let iterations: usize = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let s = servers();
    let env = TestEnv::named("bench").await;
    let config = s.dir.join("bench-config.toml");
    std::fs::write(&config, env.config_toml())?;
    let ours_env = function_env(&config, "warn");
    let peer = Peer::new(&env).await?;
    println!(
        "okta-hook benchmark: {} ({} bytes), {iterations} samples each",
        binary.display(),
        std::fs::metadata(&binary)?.len()
    );
    println!(
        "PostgreSQL {} on localhost:{} over TLS (SCRAM), Secrets Manager = moto {}\n",
        s.pg_major, s.pg_port, s.moto_url
    );

    let checker = env.superuser().await;
    let [ours_cold, peer_cold] = cold_starts(
        [
            Side {
                who: Who::Ours,
                program: &binary,
                vars: &ours_env,
            },
            Side {
                who: Who::Peer,
                program: &peer.bootstrap,
                vars: &peer.env,
            },
        ],
        &env,
        &checker,
        iterations,
    )
    .await;

    // Warm: one process each, deliveries interleaved so that both see the same machine.
    let ours = Function::spawn(&binary, &ours_env).await?;
    let theirs = Function::spawn(&peer.bootstrap, &peer.env).await?;
    ours.invoke(&sample("challenge")).await;
    theirs.invoke(&sample("challenge")).await;
    let mut warm = Vec::new();
    let mut ours_batches = Vec::new();
    for size in [1usize, 10, 100] {
        let (mut ours_samples, mut peer_samples) = (Vec::new(), Vec::new());
        for it in 0..iterations {
            let tag = format!("w{size}i{it}");
            let (request, users) = onboarding(&env, Who::Ours, &tag, size);
            let (took, body) = ours.invoke(&request).await;
            assert_applied(&body, size);
            ours_samples.push(took);
            ours_batches.push((size, it, users));
            let (request, users) = onboarding(&env, Who::Peer, &tag, size);
            peer_samples.push(theirs.invoke(&request).await.0);
            assert_eq!(onboarded(&env, &checker, &users).await, size, "peer {tag}");
        }
        let ours_last = &ours_batches.last().expect("batch").2;
        assert_eq!(
            onboarded(&env, &checker, ours_last).await,
            size,
            "okta-hook w{size}"
        );
        warm.push((
            size,
            Summary::print(
                &format!("okta-hook: warm {size}-event onboarding"),
                ours_samples,
            ),
            Summary::print(&format!("peer: warm {size}-event onboarding"), peer_samples),
        ));
    }
    for size in [1usize, 10, 100] {
        let mut samples = Vec::new();
        for (_, it, users) in ours_batches.iter().filter(|(s, _, _)| *s == size) {
            let events = users
                .iter()
                .enumerate()
                .map(|(j, u)| {
                    event(
                        "user.lifecycle.deactivate",
                        Some(u),
                        None,
                        20,
                        &format!("off-{size}-{it}-{j}"),
                    )
                })
                .collect();
            let (took, body) = ours
                .invoke(&request_event_json(&delivery(
                    &format!("off-{size}-{it}"),
                    events,
                )))
                .await;
            assert_applied(&body, size);
            samples.push(took);
        }
        Summary::print(
            &format!("okta-hook: warm {size}-event offboarding"),
            samples,
        );
    }
    let mut dup = Vec::new();
    for it in 0..iterations {
        let (request, _) = onboarding(&env, Who::Ours, &format!("w100i{it}"), 100);
        dup.push(ours.invoke(&request).await.0);
    }
    Summary::print("okta-hook: duplicate delivery (already seen)", dup);
    let ours_rss = ours.peak_rss_mib().unwrap_or(f64::NAN);
    let peer_rss = theirs.peak_rss_mib().unwrap_or(f64::NAN);
    println!(
        "{:<52} okta-hook {ours_rss:.1} MiB, peer {peer_rss:.1} MiB",
        "peak RSS (VmHWM), warm"
    );
    drop((ours, theirs));

    println!();
    let (pg, my) = revocation::run(&binary, &env, iterations).await;
    let floor = revocation::postgres_floor(&env, iterations).await;
    println!();
    reconcile::run(&env).await?;

    let mut table = vec![
        Goal::at_most("cold start -> first answer", &ours_cold.to_answer, 30.0),
        Goal::against_peer(
            "first delivery after a cold start",
            &ours_cold.first_delivery,
            &peer_cold.first_delivery,
            1.25,
        ),
    ];
    for (size, ours, peer) in &warm {
        if *size == 10 {
            table.push(Goal::against_peer(
                "warm 10-event delivery",
                ours,
                peer,
                1.0,
            ));
        }
        if *size == 100 {
            let mut goal = Goal::at_most("warm 100-event onboarding", ours, 15.0);
            goal.peer = format!("{:.1} / {:.1} ms", stats::ms(peer.p50), stats::ms(peer.p95));
            table.push(goal);
        }
    }
    table.push(Goal {
        what: "peak RSS".into(),
        goal: "< 25 MiB".into(),
        ours: format!("{ours_rss:.1} MiB"),
        peer: format!("{peer_rss:.1} MiB"),
        met: ours_rss < 25.0,
    });
    for (engine, summaries) in [("PostgreSQL", &pg), ("MariaDB", &my)] {
        for ((users, each), summary) in revocation::SCENARIOS.iter().zip(summaries) {
            let ceiling = match (users, each) {
                (1, 1) => 20.0,
                (1, _) => 40.0,
                _ => 80.0,
            };
            let mut goal = Goal::at_most(
                &format!("revoke {engine} {users} user x {each} sessions"),
                summary,
                ceiling,
            );
            if engine == "PostgreSQL" {
                let f = &floor[revocation::SCENARIOS
                    .iter()
                    .position(|s| s == &(*users, *each))
                    .expect("scenario")];
                goal.peer = format!("floor {:.1} ms", stats::ms(f.p50));
            }
            table.push(goal);
        }
    }
    goals::print(&table);
    println!(
        "(\"floor\": the same sessions signalled and polled by a superuser, no hook: what the server alone takes)"
    );
    Ok(())
}
