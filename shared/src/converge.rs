//! The pipeline for one target, whatever its engine: a delivery (or a reconcile listing) in, the target
//! converged and audited out.
//!
//! For each batch of users: lock them, record their facts, read facts and catalog back, [plan](plan_user),
//! run each user's steps, check what the catalog then says, audit, commit; after the commit, kill the live
//! sessions of every role that lost access and prove none is left. The engines implement the narrow
//! [`Backend`] (a connection to one target) and [`Unit`] (one unit of work on it) traits; nothing here
//! knows SQL.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::audit::{ACCESS_LEFT, AuditEntry, Outcome};
use crate::config::{Config, TargetConfig};
use crate::error::SyncError;
use crate::journal::{Fact, FactBatch, Stamp, UserFacts, facts_of, status_from_okta};
use crate::naming::NameRules;
use crate::okta::{GroupRef, OktaEvent, is_okta_id};
use crate::plan::{
    ActualRole, ActualRoles, Mapping, PlanContext, Step, UserPlan, plan_user, role_name_for,
};
use crate::reconcile::{Listing, PlannedUser, RECONCILE_ACTOR, ReconcileReport};
use crate::secrets::Secrets;
use crate::status_lookup::StatusLookup;

/// Longest wait for Okta's answers about users whose status was never seen (inside a delivery's budget).
const STATUS_LOOKUP_TIMEOUT: Duration = Duration::from_millis(800);

/// How a delivery reached us: its id and when it was received (offboarding durations count from `at`;
/// `wall` bounds the `published` time of its events).
#[derive(Debug, Clone)]
pub struct Received {
    pub delivery_id: String,
    pub at: Instant,
    pub wall: DateTime<Utc>,
}

/// What one delivery did on one target.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TargetSummary {
    pub target: String,
    pub duplicate_delivery: bool,
    pub new_events: usize,
    pub duplicate_events: usize,
    pub users: usize,
    pub changes: usize,
    pub refused: usize,
    pub failed: usize,
    /// Users not entitled in Okta who keep access (a refusal or a failed change): an alarm, and drift.
    pub access_left: usize,
    pub sessions_terminated: i64,
}

/// Where a user's changes come from, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    pub uuids: Vec<String>,
    pub actor: String,
    /// The user has new facts (refusals are audited only then, not on every re-run).
    pub news: bool,
}

/// Per role, sessions `(terminated, remaining)` after the kill.
pub type SessionCounts = BTreeMap<String, (i64, i64)>;

/// What ending sessions found on the writer and on the target's readers.
#[derive(Debug, Default)]
pub struct SessionsEnded {
    /// Per role, `(terminated, remaining)`, summed over the writer and every reader reached.
    pub counts: SessionCounts,
    /// Readers that could not be reached, with why: their sessions of these roles may still be alive.
    pub unreached: Vec<(String, SyncError)>,
}

impl SessionsEnded {
    /// Add one endpoint's counts.
    pub fn add(&mut self, counts: SessionCounts) {
        for (role, (terminated, remaining)) in counts {
            let sum = self.counts.entry(role).or_default();
            sum.0 += terminated;
            sum.1 += remaining;
        }
    }
}

/// One engine's kept connection to one target.
pub trait Backend: Send {
    /// A unit of work: a transaction on PostgreSQL.
    type Unit<'a>: Unit
    where
        Self: 'a;

    /// Offboarding removes IAM authentication (PostgreSQL) or keeps it behind a locked account (MySQL).
    const IAM_REMOVED_ON_OFFBOARD: bool;
    /// Role changes can be rolled back, so a dry run executes them and rolls back; otherwise it only plans.
    const TRANSACTIONAL_DDL: bool;

    /// A working, bootstrapped connection (reconnecting, and re-reading the master secret once when the
    /// database rejects the password).
    fn ready(&mut self, secrets: &Secrets) -> impl Future<Output = Result<(), SyncError>> + Send;
    /// The engine's rules for account names (known once connected).
    fn names(&self) -> NameRules;
    /// Names a login must never map onto: the master user, the engine's own roles, mapped and configured
    /// protected roles.
    fn protected_names(&self) -> BTreeSet<String>;
    /// After `error` on a connection [`Backend::ready`] trusted without a round trip: whether the connection
    /// was found closed and a new one made (its open transaction, if any, was rolled back by the server).
    fn reconnect_if_closed(
        &mut self,
        error: &SyncError,
        secrets: &Secrets,
    ) -> impl Future<Output = Result<bool, SyncError>> + Send;
    /// Start a unit of work (its statements' waits are bounded by the session's settings).
    fn begin(&mut self) -> impl Future<Output = Result<Self::Unit<'_>, SyncError>> + Send;
    /// Okta ids of every user with a recorded role.
    fn managed_users(&mut self) -> impl Future<Output = Result<Vec<String>, SyncError>> + Send;
    /// Okta ids recorded as members of a group.
    fn group_members(
        &mut self,
        group_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, SyncError>> + Send;
    /// Terminate every session of these roles and re-check until none is left (bounded), on the writer and
    /// on every reader at once. `Err` only when the writer failed; unreachable readers are reported.
    fn terminate_sessions(
        &mut self,
        secrets: &Secrets,
        roles: &[String],
    ) -> impl Future<Output = Result<SessionsEnded, SyncError>> + Send;
    /// Live sessions of these roles, in all.
    fn count_sessions(
        &mut self,
        roles: &[String],
    ) -> impl Future<Output = Result<i64, SyncError>> + Send;
    /// Write audit records outside a unit of work.
    fn insert_audit(
        &mut self,
        delivery_id: &str,
        entries: &[AuditEntry],
    ) -> impl Future<Output = Result<(), SyncError>> + Send;
}

/// One unit of work on a target: everything between [`Backend::begin`] and [`Unit::finish`].
pub trait Unit: Send {
    /// Record the delivery id and, if it was not seen before, its events' uuids, then [`Unit::lock_users`]
    /// of `lock` (none when empty), in that order: `None` for a delivery seen before, else the uuids not seen
    /// before. The claim's answer is not needed to lock, so an engine may send both at once.
    fn claim_and_lock(
        &mut self,
        delivery_id: &str,
        events: &[OktaEvent],
        lock: &[String],
    ) -> impl Future<Output = Result<Option<HashSet<String>>, SyncError>> + Send;
    /// Serialize changes per Okta user until the unit ends.
    fn lock_users(&mut self, ids: &[String]) -> impl Future<Output = Result<(), SyncError>> + Send;
    /// Record a group's deletion and end the memberships stamped before it; returns their users.
    fn record_group_deletion(
        &mut self,
        group: &GroupRef,
        stamp: &Stamp,
    ) -> impl Future<Output = Result<Vec<String>, SyncError>> + Send;
    /// Record facts; a fact only replaces an older one. Memberships of groups `mapping` does not map only
    /// update recorded rows.
    fn write_facts(
        &mut self,
        batch: &FactBatch,
        mapping: &Mapping,
    ) -> impl Future<Output = Result<(), SyncError>> + Send;
    /// Everything recorded about these users.
    fn read_facts(
        &mut self,
        users: &[String],
    ) -> impl Future<Output = Result<BTreeMap<String, UserFacts>, SyncError>> + Send;
    /// The accounts with these names, and those recorded for these Okta users whatever they are called now,
    /// as the planner needs them.
    fn read_roles(
        &mut self,
        names: &[String],
        users: &[String],
    ) -> impl Future<Output = Result<BTreeMap<String, ActualRole>, SyncError>> + Send;
    /// Run every user's steps, in order; per user, `Ok` or why it failed. A transient error aborts the unit
    /// (`Err`); a permanent one is undone for that user as far as the engine can (a savepoint) and reported,
    /// so the other users still converge.
    fn run_steps(
        &mut self,
        plans: &[&UserPlan],
    ) -> impl Future<Output = Result<Vec<Result<(), String>>, SyncError>> + Send;
    /// Of these revoking steps, the ones the catalog says did not take (PostgreSQL 16+ keeps a membership
    /// another role also granted).
    fn steps_not_taken(
        &mut self,
        revokes: &[Step],
    ) -> impl Future<Output = Result<Vec<usize>, SyncError>> + Send;
    /// Write audit records now (the refused events of a delivery).
    fn insert_audit(
        &mut self,
        delivery_id: &str,
        entries: &[AuditEntry],
    ) -> impl Future<Output = Result<(), SyncError>> + Send;
    /// Record which account carries each user's access (`roles`: `(okta_id, role)`) and the audit, then
    /// commit (after the engine's own last checks, which may refuse and roll back) or roll back.
    fn finish(
        self,
        commit: bool,
        roles: &[(String, String)],
        delivery_id: &str,
        audit: &[AuditEntry],
    ) -> impl Future<Output = Result<(), SyncError>> + Send;
}

/// One configured target: what the pipeline needs to know about it, and its engine's connection.
#[derive(Debug)]
pub struct TargetRunner<B> {
    name: String,
    mapping: Mapping,
    users_per_transaction: usize,
    backend: B,
}

/// A role that lost access and whose sessions must end.
#[derive(Debug, Clone)]
struct Offboarded {
    okta_id: String,
    role: String,
    /// Other roles that held it (their sessions may have done `SET ROLE` into it).
    holders: Vec<String>,
    uuids: Vec<String>,
    actor: String,
    changed: bool,
}

struct Converged {
    offboarded: Vec<Offboarded>,
    plans: Vec<UserPlan>,
}

/// What one batch needs besides its users.
struct Batch<'a> {
    received: &'a Received,
    status_lookup: Option<(&'a Arc<StatusLookup>, &'a Secrets)>,
    dry_run: bool,
}

impl<B: Backend> TargetRunner<B> {
    pub fn new(cfg: &TargetConfig, config: &Config, backend: B) -> Self {
        Self {
            name: cfg.name.clone(),
            mapping: Mapping::new(config, &cfg.name),
            users_per_transaction: cfg.users_per_transaction,
            backend,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A working, bootstrapped connection, made now.
    pub async fn ready(&mut self, secrets: &Secrets) -> Result<(), SyncError> {
        self.backend.ready(secrets).await
    }

    /// The engine's connection (for tests and diagnostics).
    pub fn backend(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Apply the events of one delivery; `refused` are its events stamped in the future, audited only.
    ///
    /// The kept connection is trusted without a round trip when it answered moments ago; if the server
    /// closed it meanwhile (a restart, a failover, a terminated backend), the delivery is applied once more
    /// on a new connection. Applying a delivery twice is safe: it is how Okta's retries work.
    pub async fn apply(
        &mut self,
        secrets: &Secrets,
        received: &Received,
        events: &[OktaEvent],
        refused: &[OktaEvent],
        status_lookup: Option<&Arc<StatusLookup>>,
    ) -> Result<TargetSummary, SyncError> {
        match self
            .apply_once(secrets, received, events, refused, status_lookup)
            .await
        {
            Err(e) if self.backend.reconnect_if_closed(&e, secrets).await? => {
                self.apply_once(secrets, received, events, refused, status_lookup)
                    .await
            }
            result => result,
        }
    }

    /// Up to `users_per_transaction` touched users, everything happens in one unit of work (facts and plan
    /// read under the users' locks). A bigger delivery (a large batch, or the deletion of a large group)
    /// records its facts in one unit without locks, then converges its users in batches of that size, each
    /// its own unit: one lock per user would exhaust the server's lock table.
    async fn apply_once(
        &mut self,
        secrets: &Secrets,
        received: &Received,
        events: &[OktaEvent],
        refused: &[OktaEvent],
        status_lookup: Option<&Arc<StatusLookup>>,
    ) -> Result<TargetSummary, SyncError> {
        self.backend.ready(secrets).await?;
        let rules = (self.backend.names(), self.backend.protected_names());
        let cap = self.users_per_transaction;
        let (name, mapping) = (&self.name, &self.mapping);
        let mut summary = TargetSummary {
            target: name.clone(),
            ..TargetSummary::default()
        };
        let batch = Batch {
            received,
            status_lookup: status_lookup.map(|l| (l, secrets)),
            dry_run: false,
        };
        let mut unit = self.backend.begin().await?;

        // Which users this delivery touches, and through which events (for the audit trail).
        let mut touched: BTreeMap<String, Vec<&OktaEvent>> = BTreeMap::new();
        for e in events {
            if let Some(u) = &e.user {
                touched.entry(u.id.clone()).or_default().push(e);
            }
        }
        let mut locked = touched.len() <= cap;
        let lock: Vec<String> = if locked {
            touched.keys().cloned().collect()
        } else {
            Vec::new()
        };

        // A delivery seen before records no facts, but its users are still re-converged: if the first
        // attempt committed and then failed (say, while terminating sessions), Okta's retry finishes it.
        let claimed = unit
            .claim_and_lock(&received.delivery_id, events, &lock)
            .await?;
        summary.duplicate_delivery = claimed.is_none();
        let refusals: Vec<AuditEntry> = refused
            .iter()
            .map(|e| future_event_audit(name, received, e))
            .collect();
        unit.insert_audit(&received.delivery_id, &refusals).await?;
        let new_uuids = claimed.unwrap_or_default();
        let fresh: Vec<&OktaEvent> = events
            .iter()
            .filter(|e| new_uuids.contains(&e.uuid))
            .collect();
        summary.new_events = fresh.len();
        summary.duplicate_events = events.len() - fresh.len();

        // Users with news in this delivery: only their refusals are audited (again and again would be noise).
        let mut with_news: HashSet<String> = fresh
            .iter()
            .filter_map(|e| e.user.as_ref().map(|u| u.id.clone()))
            .collect();

        // Joining a group that is not mapped is not news; leaving any group, or its deletion, always is
        // (the group may have been mapped before: its stored memberships must follow).
        let facts = FactBatch::reduce(fresh.iter().flat_map(|e| facts_of(e)).filter(|f| match f {
            Fact::Membership {
                group,
                member: true,
                ..
            } => mapping.group_is_mapped(group),
            _ => true,
        }));
        for (group, stamp) in &facts.deleted_groups {
            let ended = unit.record_group_deletion(group, stamp).await?;
            let event = fresh.iter().find(|e| e.uuid == stamp.uuid);
            let extra: Vec<String> = ended
                .iter()
                .filter(|u| !touched.contains_key(*u))
                .cloned()
                .collect();
            locked = locked && touched.len() + extra.len() <= cap;
            if locked {
                unit.lock_users(&extra).await?;
            }
            for user in ended {
                touched
                    .entry(user.clone())
                    .or_default()
                    .extend(event.copied());
                with_news.insert(user);
            }
        }
        unit.write_facts(&facts, mapping).await?;

        let touched: BTreeMap<String, Provenance> = touched
            .into_iter()
            .map(|(id, events)| {
                let provenance = Provenance {
                    uuids: events.iter().map(|e| e.uuid.clone()).collect(),
                    actor: events
                        .iter()
                        .max_by_key(|e| e.published)
                        .map(|e| e.actor.clone())
                        .unwrap_or_default(),
                    news: with_news.contains(&id),
                };
                (id, provenance)
            })
            .collect();
        if locked {
            let converged =
                converge::<B>(unit, name, mapping, rules, &touched, &batch, &mut summary).await?;
            self.kill_sessions(secrets, received, converged.offboarded, &mut summary)
                .await?;
            return Ok(summary);
        }
        unit.finish(true, &[], &received.delivery_id, &[]).await?;
        let users: Vec<(String, Provenance)> = touched.into_iter().collect();
        // Sessions a batch could not end do not hold back the next batches' revocations: every batch is
        // converged, then the first such failure makes the delivery retried.
        let mut sessions_left = None;
        for chunk in users.chunks(cap) {
            let touched: BTreeMap<String, Provenance> = chunk.iter().cloned().collect();
            let converged = self
                .converge_locked(&touched, None, &batch, &mut summary)
                .await?;
            if let Err(e) = self
                .kill_sessions(secrets, received, converged.offboarded, &mut summary)
                .await
            {
                sessions_left.get_or_insert(e);
            }
        }
        match sessions_left {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// Converge every listed and every managed user to a full Okta listing, in batches of
    /// `users_per_transaction` users (each its own unit of work: bounded locks, short transactions next to
    /// live hook traffic). A dry run plans the same steps (on PostgreSQL it also runs and rolls them back)
    /// and counts the live sessions that would end.
    pub async fn reconcile(
        &mut self,
        secrets: &Secrets,
        listing: &Listing,
        dry_run: bool,
    ) -> Result<ReconcileReport, SyncError> {
        let started = Instant::now();
        self.backend.ready(secrets).await?;
        let stamp = Stamp {
            published: listing.listed_at,
            uuid: listing.run_id.clone(),
        };
        // The facts of the listing, per user; users recorded but no longer listed lose the membership.
        let mut facts: BTreeMap<String, Vec<Fact>> = self
            .backend
            .managed_users()
            .await?
            .into_iter()
            .map(|id| (id, Vec::new()))
            .collect();
        for (group_id, members) in &listing.groups {
            let group = GroupRef {
                id: group_id.clone(),
                name: String::new(),
            };
            if !self.mapping.group_is_mapped(&group) {
                continue;
            }
            let listed: BTreeSet<&str> = members.iter().map(|u| u.id.as_str()).collect();
            for u in members.iter().filter(|u| is_okta_id(&u.id)) {
                let user = facts.entry(u.id.clone()).or_default();
                user.push(Fact::Login {
                    user: u.id.clone(),
                    login: u.profile.login.clone(),
                    stamp: stamp.clone(),
                });
                user.push(Fact::Status {
                    user: u.id.clone(),
                    status: status_from_okta(&u.status),
                    stamp: stamp.clone(),
                });
                user.push(Fact::Membership {
                    user: u.id.clone(),
                    group: group.clone(),
                    member: true,
                    stamp: stamp.clone(),
                });
            }
            for id in self.backend.group_members(group_id).await? {
                if !listed.contains(id.as_str()) {
                    let fact = Fact::Membership {
                        user: id.clone(),
                        group: group.clone(),
                        member: false,
                        stamp: stamp.clone(),
                    };
                    facts.entry(id).or_default().push(fact);
                }
            }
        }

        let provenance = Provenance {
            uuids: vec![listing.run_id.clone()],
            actor: RECONCILE_ACTOR.into(),
            news: true,
        };
        let received = Received {
            delivery_id: listing.run_id.clone(),
            at: started,
            wall: listing.listed_at,
        };
        let batch = Batch {
            received: &received,
            status_lookup: None,
            dry_run,
        };
        let mut report = ReconcileReport {
            target: self.name.clone(),
            dry_run,
            ..ReconcileReport::default()
        };
        let users: Vec<(String, Vec<Fact>)> = facts.into_iter().collect();
        for chunk in users.chunks(self.users_per_transaction) {
            let facts = FactBatch::reduce(chunk.iter().flat_map(|(_, f)| f.iter().cloned()));
            let touched: BTreeMap<String, Provenance> = chunk
                .iter()
                .map(|(id, _)| (id.clone(), provenance.clone()))
                .collect();
            let mut summary = TargetSummary {
                target: self.name.clone(),
                ..TargetSummary::default()
            };
            let converged = match self
                .converge_locked(&touched, Some(&facts), &batch, &mut summary)
                .await
            {
                Ok(converged) => converged,
                // One batch that cannot be applied now (a lock held elsewhere, a failover) must not keep the
                // others from converging: it is counted as failed (drift, and an ERROR line) and retried by
                // the next run.
                Err(e) if e.is_transient() => {
                    tracing::error!(db_target = %self.name, users = chunk.len(), error = %e,
                        "reconcile batch not applied; the next run retries it");
                    report.failed += chunk.len();
                    continue;
                }
                Err(e) => return Err(e),
            };
            report.sessions += if dry_run {
                let roles: Vec<String> = converged
                    .offboarded
                    .iter()
                    .map(|o| o.role.clone())
                    .collect();
                self.backend.count_sessions(&roles).await?
            } else {
                // Sessions left (a reader out of reach) do not stop the run: they are audited as failed
                // and counted, and the next run (or delivery) kills them.
                if let Err(e) = self
                    .kill_sessions(secrets, &received, converged.offboarded, &mut summary)
                    .await
                {
                    tracing::error!(db_target = %self.name, error = %e,
                        "sessions not all ended; the next run retries");
                    report.failed += 1;
                }
                summary.sessions_terminated
            };
            report.users += summary.users;
            report.changes += summary.changes;
            report.refused += summary.refused;
            report.failed += summary.failed;
            report.access_left += summary.access_left;
            report
                .plan
                .extend(converged.plans.iter().filter_map(PlannedUser::from_plan));
        }
        Ok(report)
    }

    /// One unit of work: lock the `touched` users, record `facts` (if any), and converge them.
    async fn converge_locked(
        &mut self,
        touched: &BTreeMap<String, Provenance>,
        facts: Option<&FactBatch>,
        batch: &Batch<'_>,
        summary: &mut TargetSummary,
    ) -> Result<Converged, SyncError> {
        // The backend's rules are read before the unit borrows it.
        let rules = (self.backend.names(), self.backend.protected_names());
        let mut unit = self.backend.begin().await?;
        let ids: Vec<String> = touched.keys().cloned().collect();
        unit.lock_users(&ids).await?;
        if let Some(facts) = facts {
            unit.write_facts(facts, &self.mapping).await?;
        }
        converge::<B>(
            unit,
            &self.name,
            &self.mapping,
            rules,
            touched,
            batch,
            summary,
        )
        .await
    }

    /// After commit: kill the sessions of every role that lost access, on the writer and every reader, and
    /// prove none is left. A failure is audited, the other roles are still handled, and the error makes the
    /// delivery retried (the retry re-converges, and kills again wherever sessions are left).
    async fn kill_sessions(
        &mut self,
        secrets: &Secrets,
        received: &Received,
        offboarded: Vec<Offboarded>,
        summary: &mut TargetSummary,
    ) -> Result<(), SyncError> {
        if offboarded.is_empty() {
            return Ok(());
        }
        let roles: Vec<String> = offboarded
            .iter()
            .flat_map(|o| std::iter::once(o.role.clone()).chain(o.holders.iter().cloned()))
            .collect();
        let killed = self.backend.terminate_sessions(secrets, &roles).await;
        let unreached: Vec<String> = match &killed {
            Ok(ended) => ended
                .unreached
                .iter()
                .map(|(reader, e)| format!("reader {reader} not reached ({e})"))
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut audit = Vec::new();
        for o in offboarded {
            let (outcome, detail) = match &killed {
                Ok(ended) => {
                    let (terminated, remaining) = std::iter::once(&o.role)
                        .chain(&o.holders)
                        .filter_map(|r| ended.counts.get(r))
                        .fold((0, 0), |(t, r), (t2, r2)| (t + t2, r + r2));
                    summary.sessions_terminated += terminated;
                    if !(o.changed || terminated > 0 || remaining > 0 || !unreached.is_empty()) {
                        continue;
                    }
                    let outcome = if remaining == 0 && unreached.is_empty() {
                        Outcome::Applied
                    } else {
                        Outcome::Failed
                    };
                    let mut detail = format!("{terminated} terminated, {remaining} remaining");
                    for u in &unreached {
                        detail.push_str("; ");
                        detail.push_str(u);
                    }
                    (outcome, detail)
                }
                Err(e) => (Outcome::Failed, e.to_string()),
            };
            audit.push(AuditEntry {
                target: self.name.clone(),
                delivery_id: received.delivery_id.clone(),
                event_uuids: o.uuids,
                actor: o.actor,
                okta_id: Some(o.okta_id),
                role: Some(o.role),
                action: "terminate_sessions".into(),
                detail: Some(detail),
                outcome,
                duration_ms: ms(received.at.elapsed()),
            });
        }
        if !audit.is_empty() {
            self.backend
                .insert_audit(&received.delivery_id, &audit)
                .await?;
            for entry in &audit {
                entry.log();
            }
        }
        let ended = killed?;
        if let Some((reader, e)) = ended.unreached.into_iter().next() {
            // Transient: the delivery is queued, and its retry ends the sessions on that reader.
            return Err(SyncError::transient(format!(
                "sessions on reader {reader} not ended: {e}"
            )));
        }
        // Sessions still there (ones the master may not end, or that outlived the re-checks): the retry
        // signals them again.
        let remaining: i64 = ended.counts.values().map(|(_, remaining)| remaining).sum();
        if remaining > 0 {
            return Err(SyncError::transient(format!(
                "{remaining} session(s) still alive after the kill"
            )));
        }
        Ok(())
    }
}

/// Plan every touched user from the recorded facts and the catalog, run all their steps, check what the
/// catalog then says, audit, and let the engine commit (or, for a dry run, roll everything back; an engine
/// without transactional DDL only plans).
async fn converge<B: Backend>(
    mut unit: B::Unit<'_>,
    name: &str,
    mapping: &Mapping,
    (names, protected): (NameRules, BTreeSet<String>),
    touched: &BTreeMap<String, Provenance>,
    batch: &Batch<'_>,
    summary: &mut TargetSummary,
) -> Result<Converged, SyncError> {
    let received = batch.received;
    let ctx = PlanContext {
        mapping,
        protected: &protected,
        names: &names,
        iam_removed_on_offboard: B::IAM_REMOVED_ON_OFFBOARD,
    };
    let users: Vec<String> = touched.keys().cloned().collect();
    summary.users += users.len();
    let mut facts = unit.read_facts(&users).await?;
    let unverified = verify_statuses(&mut unit, mapping, batch, &mut facts).await?;
    let mut candidates: Vec<String> = Vec::new();
    for f in facts.values() {
        candidates.extend(f.role_name.clone());
        if let Some(Ok(n)) = f.login.as_deref().map(|l| role_name_for(&ctx, l)) {
            candidates.push(n);
        }
    }
    let roles = unit.read_roles(&candidates, &users).await?;

    // Plan every user (those Okta's API did not answer for are left alone this time).
    let mut planned: Vec<(&UserFacts, UserPlan)> = Vec::new();
    let mut audit: Vec<AuditEntry> = Vec::new();
    let entry =
        |okta_id: &str, action: &str, role: Option<String>, detail: Option<String>, outcome| {
            let provenance = touched.get(okta_id).cloned().unwrap_or_default();
            AuditEntry {
                target: name.to_owned(),
                delivery_id: received.delivery_id.clone(),
                event_uuids: provenance.uuids,
                actor: provenance.actor,
                okta_id: Some(okta_id.to_owned()),
                role,
                action: action.to_owned(),
                detail,
                outcome,
                duration_ms: ms(received.at.elapsed()),
            }
        };
    for (okta_id, user_facts) in &facts {
        if let Some(why) = unverified.get(okta_id) {
            summary.refused += 1;
            audit.push(entry(
                okta_id,
                "status_unverified",
                user_facts.role_name.clone(),
                Some(format!(
                    "the user's status was never seen and Okta's API did not give it ({why}); nothing \
                     changed for this user (the reconcile or the next event will converge them)"
                )),
                Outcome::Refused,
            ));
            continue;
        }
        let by_login = user_facts
            .login
            .as_deref()
            .and_then(|l| role_name_for(&ctx, l).ok())
            .and_then(|n| roles.get(&n));
        // The role recorded for the user: by what the engine recorded (an OID survives renames and lost
        // markers), else by name.
        let recorded_role = roles
            .values()
            .find(|r| r.recorded_for.as_deref() == Some(okta_id.as_str()))
            .or_else(|| user_facts.role_name.as_ref().and_then(|n| roles.get(n)));
        let plan = plan_user(
            user_facts,
            ActualRoles {
                recorded: recorded_role,
                by_login,
            },
            &ctx,
        );
        if touched.get(okta_id).is_some_and(|p| p.news) {
            for r in &plan.refusals {
                summary.refused += 1;
                audit.push(entry(
                    okta_id,
                    r.code(),
                    r.role().map(str::to_owned),
                    Some(r.to_string()),
                    Outcome::Refused,
                ));
            }
        }
        planned.push((user_facts, plan));
    }

    // Run every user's steps: in one round trip where the engine can, each user on their own when one fails.
    let outcomes = if batch.dry_run && !B::TRANSACTIONAL_DDL {
        vec![Ok(()); planned.len()]
    } else {
        let plans: Vec<&UserPlan> = planned.iter().map(|(_, p)| p).collect();
        unit.run_steps(&plans).await?
    };

    let mut recorded: Vec<(String, String)> = Vec::new();
    let mut offboarded: Vec<Offboarded> = Vec::new();
    // Revoking steps made, with the index of their audit entry: checked against the catalog afterwards.
    let mut revokes: Vec<(Step, usize)> = Vec::new();
    for ((user_facts, plan), outcome) in planned.iter().zip(outcomes) {
        let okta_id = plan.okta_id.as_str();
        let failed_to_offboard = outcome.is_err() && !plan.entitled && !plan.steps.is_empty();
        if plan.access_left || failed_to_offboard {
            summary.access_left += 1;
            let reason = match &outcome {
                Err(message) => format!("revoking access failed: {message}"),
                Ok(()) => plan
                    .refusals
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            audit.push(entry(
                okta_id,
                ACCESS_LEFT,
                plan.role.clone(),
                Some(format!(
                    "not entitled in Okta, but the role keeps its access: {reason}"
                )),
                Outcome::Refused,
            ));
        }
        match outcome {
            Ok(()) => {
                for step in &plan.steps {
                    summary.changes += 1;
                    let mut detail = step.detail();
                    if matches!(step, Step::SetLogin { login: true, .. })
                        && user_facts.status.is_none()
                    {
                        detail.push_str(
                            " (status_unverified: no lifecycle event or listing seen for this user; \
                             set [okta] org_url and api_secret_arn to look it up)",
                        );
                    }
                    if matches!(step, Step::Revoke { .. } | Step::DisableIam { .. }) {
                        revokes.push((step.clone(), audit.len()));
                    }
                    audit.push(entry(
                        okta_id,
                        step.action(),
                        plan.role.clone(),
                        Some(detail),
                        Outcome::Applied,
                    ));
                }
                if let Some(role) = &plan.role {
                    recorded.push((okta_id.to_owned(), role.clone()));
                }
                if plan.terminate_sessions
                    && let Some(role) = &plan.role
                {
                    let provenance = touched.get(okta_id).cloned().unwrap_or_default();
                    offboarded.push(Offboarded {
                        okta_id: okta_id.to_owned(),
                        role: role.clone(),
                        holders: plan.holders.clone(),
                        uuids: provenance.uuids,
                        actor: provenance.actor,
                        changed: !plan.steps.is_empty(),
                    });
                }
            }
            Err(message) => {
                summary.failed += 1;
                audit.push(entry(
                    okta_id,
                    "apply",
                    plan.role.clone(),
                    Some(message),
                    Outcome::Failed,
                ));
            }
        }
    }
    if !revokes.is_empty() {
        let steps: Vec<Step> = revokes.iter().map(|(s, _)| s.clone()).collect();
        for i in unit.steps_not_taken(&steps).await? {
            if let Some(entry) = revokes.get(i).and_then(|(_, a)| audit.get_mut(*a)) {
                entry.outcome = Outcome::Failed;
                entry.detail = Some(format!(
                    "{}, but the catalog still shows it: another role granted it too (PostgreSQL 16+ \
                     revokes only the revoking role's grant); revoke it as that grantor",
                    entry.detail.as_deref().unwrap_or("revoked")
                ));
                summary.changes = summary.changes.saturating_sub(1);
                summary.failed += 1;
            }
        }
    }
    let plans = planned.into_iter().map(|(_, p)| p).collect();
    unit.finish(!batch.dry_run, &recorded, &received.delivery_id, &audit)
        .await?;
    if !batch.dry_run {
        for entry in &audit {
            entry.log();
        }
    }
    Ok(Converged { offboarded, plans })
}

/// Look up, through Okta's API (when configured), the status of users who would be entitled but whose status
/// was never seen, record each answer as a status fact stamped with the lookup time, and put it in `facts`.
/// Returns the users Okta did not answer for, and why.
async fn verify_statuses<U: Unit>(
    unit: &mut U,
    mapping: &Mapping,
    batch: &Batch<'_>,
    facts: &mut BTreeMap<String, UserFacts>,
) -> Result<BTreeMap<String, String>, SyncError> {
    let Some((lookup, secrets)) = batch.status_lookup else {
        return Ok(BTreeMap::new());
    };
    let unknown: Vec<String> = facts
        .values()
        .filter(|f| f.status.is_none() && !mapping.roles_for(&f.groups).is_empty())
        .map(|f| f.okta_id.clone())
        .collect();
    if unknown.is_empty() {
        return Ok(BTreeMap::new());
    }
    let answers = lookup
        .statuses(secrets, &unknown, STATUS_LOOKUP_TIMEOUT)
        .await;
    let mut found = Vec::new();
    let mut unanswered = BTreeMap::new();
    for (id, answer) in answers {
        match answer {
            Ok(looked_up) => {
                if let Some(f) = facts.get_mut(&id) {
                    f.status = Some(looked_up.status);
                }
                let stamp = Stamp {
                    published: looked_up.at,
                    uuid: format!("okta-api:{}", looked_up.at.timestamp_micros()),
                };
                found.push(Fact::Status {
                    user: id,
                    status: looked_up.status,
                    stamp,
                });
            }
            Err(why) => {
                tracing::warn!(okta_user = %id, error = %why, "Okta user status lookup failed");
                unanswered.insert(id, why);
            }
        }
    }
    unit.write_facts(&FactBatch::reduce(found), mapping).await?;
    Ok(unanswered)
}

/// The audit record of an event refused for a `published` time later than receipt plus the clock skew.
fn future_event_audit(target: &str, received: &Received, event: &OktaEvent) -> AuditEntry {
    AuditEntry {
        target: target.to_owned(),
        delivery_id: received.delivery_id.clone(),
        event_uuids: vec![event.uuid.clone()],
        actor: event.actor.clone(),
        okta_id: event.user.as_ref().map(|u| u.id.clone()),
        role: None,
        action: "refuse_event".into(),
        detail: Some(format!(
            "{} published {} but received {}: later than the allowed clock skew; not recorded",
            event.kind.as_str(),
            event.published.to_rfc3339(),
            received.wall.to_rfc3339()
        )),
        outcome: Outcome::Refused,
        duration_ms: ms(received.at.elapsed()),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
