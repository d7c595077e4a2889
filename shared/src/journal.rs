//! Facts: what an Okta event says about the world, stamped with the event's `published` time.
//!
//! An event is not an instruction. Each fact is stored with its [`Stamp`] and only replaces a fact with an
//! older stamp, so duplicates are no-ops, arrival order does not matter, and an old event never undoes a newer
//! one. The stamp is `(published, uuid)`: the uuid breaks ties between events published in the same
//! millisecond, so the outcome is the same in any order.

use chrono::{DateTime, Utc};

use crate::okta::{EventKind, GroupRef, OktaEvent, is_deleted_login};

/// Total order of facts: Okta's `published` time, then the event uuid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    pub published: DateTime<Utc>,
    pub uuid: String,
}

/// The part of an Okta user's status that matters for access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Suspended,
    Deprovisioned,
    Deleted,
    /// Any other Okta status (STAGED, PROVISIONED, RECOVERY, PASSWORD_EXPIRED, LOCKED_OUT), as listed by the
    /// reconcile: not entitled, since only ACTIVE users are.
    Inactive,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Deprovisioned => "DEPROVISIONED",
            Self::Deleted => "DELETED",
            Self::Inactive => "INACTIVE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ACTIVE" => Self::Active,
            "SUSPENDED" => Self::Suspended,
            "DEPROVISIONED" => Self::Deprovisioned,
            "DELETED" => Self::Deleted,
            "INACTIVE" => Self::Inactive,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// The user's lifecycle status.
    Status {
        user: String,
        status: UserStatus,
        stamp: Stamp,
    },
    /// The user's login (every user event carries the login current at that time).
    Login {
        user: String,
        login: String,
        stamp: Stamp,
    },
    /// Whether the user is a member of the group.
    Membership {
        user: String,
        group: GroupRef,
        member: bool,
        stamp: Stamp,
    },
    /// The group is gone: every membership stamped before this is void.
    GroupDeleted { group: GroupRef, stamp: Stamp },
}

impl Fact {
    pub fn stamp(&self) -> &Stamp {
        match self {
            Fact::Status { stamp, .. }
            | Fact::Login { stamp, .. }
            | Fact::Membership { stamp, .. }
            | Fact::GroupDeleted { stamp, .. } => stamp,
        }
    }
}

/// The status fact for a user's status as Okta's API lists it.
pub fn status_from_okta(status: &str) -> UserStatus {
    match status {
        "ACTIVE" => UserStatus::Active,
        "SUSPENDED" => UserStatus::Suspended,
        "DEPROVISIONED" => UserStatus::Deprovisioned,
        _ => UserStatus::Inactive,
    }
}

/// Split events into those to record and those stamped later than `received` plus `skew`. Facts are ordered
/// by `published`, so an event stamped in the future (forged, or from a broken clock) would outlive every
/// real event after it: it is refused, never stored.
pub fn refuse_future(
    events: &[OktaEvent],
    received: DateTime<Utc>,
    skew: std::time::Duration,
) -> (Vec<OktaEvent>, Vec<OktaEvent>) {
    let limit = received + chrono::Duration::from_std(skew).unwrap_or(chrono::Duration::MAX);
    events.iter().cloned().partition(|e| e.published <= limit)
}

/// The facts one event establishes.
pub fn facts_of(event: &OktaEvent) -> Vec<Fact> {
    let stamp = Stamp {
        published: event.published,
        uuid: event.uuid.clone(),
    };
    let mut facts = Vec::with_capacity(2);
    // Okta renames a user it deletes to `<id>@deleted.invalid`: that is never a login to follow.
    if let Some(user) = event.user.as_ref().filter(|u| !is_deleted_login(&u.login)) {
        facts.push(Fact::Login {
            user: user.id.clone(),
            login: user.login.clone(),
            stamp: stamp.clone(),
        });
    }
    let status = match event.kind {
        EventKind::Deactivate => Some(UserStatus::Deprovisioned),
        EventKind::Suspend => Some(UserStatus::Suspended),
        EventKind::Unsuspend | EventKind::Activate => Some(UserStatus::Active),
        EventKind::DeleteInitiated => Some(UserStatus::Deleted),
        _ => None,
    };
    match (event.kind, &event.user, &event.group) {
        (_, Some(user), _) if status.is_some() => {
            let status = status.unwrap_or(UserStatus::Active);
            facts.push(Fact::Status {
                user: user.id.clone(),
                status,
                stamp,
            });
        }
        (EventKind::MembershipAdd | EventKind::MembershipRemove, Some(user), Some(group)) => {
            facts.push(Fact::Membership {
                user: user.id.clone(),
                group: group.clone(),
                member: event.kind == EventKind::MembershipAdd,
                stamp,
            });
        }
        (EventKind::GroupDelete, _, Some(group)) => facts.push(Fact::GroupDeleted {
            group: group.clone(),
            stamp,
        }),
        _ => {}
    }
    facts
}

/// Facts of one delivery, reduced to the newest per key so each kind can be written in one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactBatch {
    pub logins: Vec<(String, String, Stamp)>,
    pub statuses: Vec<(String, UserStatus, Stamp)>,
    /// `(user, group, member, stamp)`.
    pub memberships: Vec<(String, GroupRef, bool, Stamp)>,
    pub deleted_groups: Vec<(GroupRef, Stamp)>,
}

impl FactBatch {
    /// Keep the newest fact per key. Older facts in the same batch could never win against it anyway.
    pub fn reduce(facts: impl IntoIterator<Item = Fact>) -> Self {
        use std::collections::BTreeMap;
        let mut logins: BTreeMap<String, (String, Stamp)> = BTreeMap::new();
        let mut statuses: BTreeMap<String, (UserStatus, Stamp)> = BTreeMap::new();
        let mut memberships: BTreeMap<(String, String), (GroupRef, bool, Stamp)> = BTreeMap::new();
        let mut deleted: BTreeMap<String, (GroupRef, Stamp)> = BTreeMap::new();
        fn keep<K: Ord, V>(
            map: &mut BTreeMap<K, V>,
            key: K,
            value: V,
            stamp: impl Fn(&V) -> &Stamp,
        ) {
            match map.get(&key) {
                Some(old) if stamp(old) >= stamp(&value) => {}
                _ => {
                    map.insert(key, value);
                }
            }
        }
        for fact in facts {
            match fact {
                Fact::Login { user, login, stamp } => {
                    keep(&mut logins, user, (login, stamp), |v| &v.1)
                }
                Fact::Status {
                    user,
                    status,
                    stamp,
                } => keep(&mut statuses, user, (status, stamp), |v| &v.1),
                Fact::Membership {
                    user,
                    group,
                    member,
                    stamp,
                } => keep(
                    &mut memberships,
                    (user, group.id.clone()),
                    (group, member, stamp),
                    |v| &v.2,
                ),
                Fact::GroupDeleted { group, stamp } => {
                    keep(&mut deleted, group.id.clone(), (group, stamp), |v| &v.1)
                }
            }
        }
        Self {
            logins: logins.into_iter().map(|(u, (l, s))| (u, l, s)).collect(),
            statuses: statuses
                .into_iter()
                .map(|(u, (st, s))| (u, st, s))
                .collect(),
            memberships: memberships
                .into_iter()
                .map(|((u, _), (g, m, s))| (u, g, m, s))
                .collect(),
            deleted_groups: deleted.into_values().collect(),
        }
    }
}

/// Everything known about one Okta user on one target, as read back from the state schema.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserFacts {
    pub okta_id: String,
    pub login: Option<String>,
    /// `None` when no lifecycle event was seen: the user is assumed active (Okta only lets active or
    /// staged users be managed; the reconcile job corrects any wrong assumption).
    pub status: Option<UserStatus>,
    /// Groups the user is currently a member of (deleted groups excluded).
    pub groups: Vec<GroupRef>,
    /// The role we created for this user on this target, if any (survives login changes).
    pub role_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::okta::UserRef;

    fn ev(kind: EventKind, with_group: bool) -> OktaEvent {
        OktaEvent {
            uuid: "u1".into(),
            published: "2026-03-02T14:05:10.903Z".parse().unwrap(),
            kind,
            actor: "admin".into(),
            user: (kind != EventKind::GroupDelete).then(|| UserRef {
                id: "00u1".into(),
                login: "a@x".into(),
            }),
            group: with_group.then(|| GroupRef {
                id: "00g1".into(),
                name: "g".into(),
            }),
        }
    }

    #[test]
    fn facts_per_event_kind() {
        use EventKind::*;
        let status_of = |k| {
            facts_of(&ev(k, false)).into_iter().find_map(|f| match f {
                Fact::Status { status, .. } => Some(status),
                _ => None,
            })
        };
        assert_eq!(status_of(Deactivate), Some(UserStatus::Deprovisioned));
        assert_eq!(status_of(Suspend), Some(UserStatus::Suspended));
        assert_eq!(status_of(Unsuspend), Some(UserStatus::Active));
        assert_eq!(status_of(Activate), Some(UserStatus::Active));
        assert_eq!(status_of(DeleteInitiated), Some(UserStatus::Deleted));
        assert_eq!(status_of(ProfileUpdate), None);
        assert!(matches!(
            facts_of(&ev(ProfileUpdate, false)).as_slice(),
            [Fact::Login { .. }]
        ));
        assert!(matches!(
            facts_of(&ev(MembershipRemove, true)).as_slice(),
            [Fact::Login { .. }, Fact::Membership { member: false, .. }]
        ));
        assert!(matches!(
            facts_of(&ev(GroupDelete, true)).as_slice(),
            [Fact::GroupDeleted { .. }]
        ));
    }

    #[test]
    fn a_deleted_user_s_placeholder_login_is_not_a_fact() {
        let mut e = ev(EventKind::ProfileUpdate, false);
        e.user.as_mut().unwrap().login = "00u1@deleted.invalid".into();
        assert!(facts_of(&e).is_empty());
        e.kind = EventKind::DeleteInitiated;
        assert!(matches!(
            facts_of(&e).as_slice(),
            [Fact::Status {
                status: UserStatus::Deleted,
                ..
            }]
        ));
    }

    #[test]
    fn events_stamped_after_receipt_plus_skew_are_refused() {
        let received: DateTime<Utc> = "2026-03-02T14:05:10.903Z".parse().unwrap();
        let at = |t: &str| OktaEvent {
            published: t.parse().unwrap(),
            ..ev(EventKind::Activate, false)
        };
        let events = vec![
            at("2026-03-02T14:00:00Z"),
            at("2026-03-02T14:07:10.903Z"),
            at("2026-03-02T14:07:10.904Z"),
            at("2999-01-01T00:00:00Z"),
        ];
        let (kept, refused) = refuse_future(&events, received, std::time::Duration::from_secs(120));
        assert_eq!(kept, events[..2]);
        assert_eq!(refused, events[2..]);
        let (kept, _) = refuse_future(&events, received, std::time::Duration::ZERO);
        assert_eq!(kept, events[..1]);
    }

    #[test]
    fn stamps_order_by_time_then_uuid() {
        let t0: DateTime<Utc> = "2026-03-02T14:05:10Z".parse().unwrap();
        let t1: DateTime<Utc> = "2026-03-02T14:05:11Z".parse().unwrap();
        let s = |t, u: &str| Stamp {
            published: t,
            uuid: u.into(),
        };
        assert!(s(t0, "zzz") < s(t1, "aaa"));
        assert!(s(t0, "aaa") < s(t0, "bbb"));
        for st in [
            "ACTIVE",
            "SUSPENDED",
            "DEPROVISIONED",
            "DELETED",
            "INACTIVE",
        ] {
            assert_eq!(UserStatus::parse(st).unwrap().as_str(), st);
        }
    }

    #[test]
    fn batch_keeps_the_newest_fact_per_key_in_any_order() {
        let t = |s: &str| -> DateTime<Utc> { format!("2026-03-02T14:05:{s}Z").parse().unwrap() };
        let st = |s: &str, u: &str| Stamp {
            published: t(s),
            uuid: u.into(),
        };
        let g = GroupRef {
            id: "00g1".into(),
            name: "g".into(),
        };
        let facts = vec![
            Fact::Membership {
                user: "00u1".into(),
                group: g.clone(),
                member: true,
                stamp: st("10", "a"),
            },
            Fact::Membership {
                user: "00u1".into(),
                group: g.clone(),
                member: false,
                stamp: st("11", "b"),
            },
            Fact::Status {
                user: "00u1".into(),
                status: UserStatus::Suspended,
                stamp: st("12", "c"),
            },
            Fact::Status {
                user: "00u1".into(),
                status: UserStatus::Active,
                stamp: st("12", "d"),
            },
            Fact::Login {
                user: "00u1".into(),
                login: "old".into(),
                stamp: st("09", "e"),
            },
            Fact::Login {
                user: "00u1".into(),
                login: "new".into(),
                stamp: st("13", "f"),
            },
            Fact::GroupDeleted {
                group: g.clone(),
                stamp: st("20", "g"),
            },
        ];
        let forward = FactBatch::reduce(facts.clone());
        let backward = FactBatch::reduce(facts.into_iter().rev());
        assert_eq!(forward, backward);
        assert_eq!(
            forward.memberships,
            vec![("00u1".into(), g.clone(), false, st("11", "b"))]
        );
        assert_eq!(
            forward.statuses,
            vec![("00u1".into(), UserStatus::Active, st("12", "d"))]
        );
        assert_eq!(
            forward.logins,
            vec![("00u1".into(), "new".into(), st("13", "f"))]
        );
        assert_eq!(forward.deleted_groups.len(), 1);
    }
}
