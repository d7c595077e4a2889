//! The planner: desired state of one user on one target, minus the actual state, gives the steps.
//!
//! Pure and engine-agnostic: it sees facts (from the journal), the mapping (from the config) and the actual
//! role (read from the catalog by the engine module), and returns [`Step`]s that an engine renders to SQL.
//! Safety rules live here so that they hold for every engine:
//! - only roles carrying our marker *and* our Okta id are altered;
//! - such a role can always be offboarded, whatever privileges it has been given: "protected" only keeps
//!   us from creating or taking over roles we do not own (and the master and RDS's own roles are never
//!   touched at all);
//! - a login never maps onto a protected name (the master, our own roles, mapped or protected roles);
//! - IAM authentication is never enabled where the engine says it would lock the master out;
//! - offboarding disables the login before anything else, onboarding enables it last.
//!
//! What differs between engines comes in a [`PlanContext`]: name rules (limits, reserved names), and whether
//! IAM authentication (an account property: membership in `rds_iam` on PostgreSQL, the authentication
//! plugin on MySQL) is removed on offboarding.

use std::collections::BTreeSet;

use crate::config::Config;
use crate::journal::{UserFacts, UserStatus};
use crate::naming::{NameRejected, NameRules, Naming};
use crate::okta::GroupRef;

/// Which Okta groups grant which roles on one target.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// `(Okta group id, roles)`. Only ids are matched, never a group's display name.
    grants: Vec<(String, Vec<String>)>,
    pub naming: Naming,
}

impl Mapping {
    pub fn new(config: &Config, target: &str) -> Self {
        Self {
            grants: config
                .grants_for(target)
                .map(|g| (g.okta_group.clone(), g.roles.clone()))
                .collect(),
            naming: Naming {
                source: config.okta.username,
                lowercase: config.okta.lowercase,
            },
        }
    }

    pub fn from_parts(grants: Vec<(String, Vec<String>)>, naming: Naming) -> Self {
        Self { grants, naming }
    }

    pub fn group_is_mapped(&self, group: &GroupRef) -> bool {
        self.grants.iter().any(|(id, _)| *id == group.id)
    }

    /// Roles granted by membership in these groups.
    pub fn roles_for(&self, groups: &[GroupRef]) -> BTreeSet<String> {
        groups
            .iter()
            .flat_map(|g| self.grants.iter().filter(move |(id, _)| *id == g.id))
            .flat_map(|(_, roles)| roles.iter().cloned())
            .collect()
    }

    /// Every role this tool may grant or revoke on the target; memberships in other roles are left alone.
    pub fn managed_roles(&self) -> BTreeSet<String> {
        self.grants
            .iter()
            .flat_map(|(_, r)| r.iter().cloned())
            .collect()
    }
}

/// What the planner needs to know about one target besides the user's facts and actual role.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    pub mapping: &'a Mapping,
    /// Names a login must never map onto (the master, our own roles, mapped and protected roles).
    pub protected: &'a BTreeSet<String>,
    pub names: &'a NameRules,
    /// Offboarding removes IAM authentication (PostgreSQL: `rds_iam` is revoked), or keeps it and relies on
    /// the locked login (MySQL: the account is locked; its authentication plugin stays).
    pub iam_removed_on_offboard: bool,
}

/// A role as it is in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActualRole {
    pub name: String,
    /// Member of our marker role.
    pub managed: bool,
    /// The Okta user id recorded on the role (comment), if any.
    pub okta_id: Option<String>,
    pub can_login: bool,
    /// Authenticates with IAM (PostgreSQL: a member of `rds_iam`; MySQL: the IAM plugin).
    pub iam: bool,
    /// Roles this role is a direct member of (the IAM role not among them).
    pub member_of: BTreeSet<String>,
    /// Superuser, an RDS/admin role or a member of one, the master user, or a configured protected role:
    /// never created, adopted or altered unless it is ours (then it can still be offboarded).
    pub protected: bool,
    /// The master user or one of RDS's own roles: never altered, even if it carries our marker.
    pub untouchable: bool,
    /// Enabling IAM authentication on this role would lock the master user out (PostgreSQL: the master
    /// inherits the role's privileges, and RDS refuses a password to members of `rds_iam`).
    pub master_inherits: bool,
    /// The Okta user the engine's own records say this role was made for (PostgreSQL: by OID), whatever
    /// its name, marker or comment now say: such a role is ours.
    pub recorded_for: Option<String>,
    /// Other roles that are members of this one (the master's own administrative membership aside): on
    /// offboarding they lose it, and their sessions end too.
    pub held_by: BTreeSet<String>,
}

/// One change to make, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create a NOLOGIN role carrying the marker and the Okta id; login is enabled by a later step.
    Create {
        role: String,
    },
    Rename {
        from: String,
        to: String,
    },
    SetLogin {
        role: String,
        login: bool,
    },
    Grant {
        granted: String,
        to: String,
    },
    Revoke {
        granted: String,
        from: String,
    },
    /// Authenticate the login with IAM (PostgreSQL: grant `rds_iam`; MySQL: the IAM plugin).
    EnableIam {
        role: String,
    },
    /// Stop authenticating the login with IAM (PostgreSQL: revoke `rds_iam`).
    DisableIam {
        role: String,
    },
}

impl Step {
    /// Short action name for the audit trail.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Create { .. } => "create_role",
            Step::Rename { .. } => "rename_role",
            Step::SetLogin { login: true, .. } => "enable_login",
            Step::SetLogin { login: false, .. } => "disable_login",
            Step::Grant { .. } => "grant",
            Step::Revoke { .. } => "revoke",
            Step::EnableIam { .. } => "enable_iam",
            Step::DisableIam { .. } => "disable_iam",
        }
    }

    /// What the step did, for the audit trail.
    pub fn detail(&self) -> String {
        match self {
            Step::Create { role } => format!("created {role}"),
            Step::Rename { from, to } => format!("{from} -> {to}"),
            Step::SetLogin { login, .. } => if *login { "LOGIN" } else { "NOLOGIN" }.to_owned(),
            Step::Grant { granted, .. } => format!("granted {granted}"),
            Step::Revoke { granted, .. } => format!("revoked {granted}"),
            Step::EnableIam { .. } => "IAM authentication enabled".to_owned(),
            Step::DisableIam { .. } => "IAM authentication removed".to_owned(),
        }
    }
}

/// Why a change was not made (audited, never silent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NameRejected(NameRejected),
    /// A role with this name exists and is not ours; adopt it explicitly if it should be managed.
    UnmanagedRoleExists(String),
    /// The role is managed but records another Okta user (two logins map to one name).
    OwnedByOtherUser {
        role: String,
        okta_id: Option<String>,
    },
    Protected(String),
    MasterWouldInheritIam(String),
    RenameTargetExists {
        from: String,
        to: String,
    },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NameRejected(_) => "name_rejected",
            Refusal::UnmanagedRoleExists(_) => "unmanaged_role_exists",
            Refusal::OwnedByOtherUser { .. } => "owned_by_other_user",
            Refusal::Protected(_) => "protected_role",
            Refusal::MasterWouldInheritIam(_) => "master_would_inherit_iam",
            Refusal::RenameTargetExists { .. } => "rename_target_exists",
        }
    }

    pub fn role(&self) -> Option<&str> {
        match self {
            Refusal::NameRejected(_) => None,
            Refusal::UnmanagedRoleExists(r)
            | Refusal::Protected(r)
            | Refusal::MasterWouldInheritIam(r) => Some(r),
            Refusal::OwnedByOtherUser { role, .. } => Some(role),
            Refusal::RenameTargetExists { from, .. } => Some(from),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NameRejected(e) => write!(f, "login cannot be a role name: {e}"),
            Refusal::UnmanagedRoleExists(r) => {
                write!(f, "role {r:?} exists and is not managed by okta-rds-sync")
            }
            Refusal::OwnedByOtherUser { role, okta_id } => {
                write!(
                    f,
                    "role {role:?} is managed for another Okta user ({})",
                    okta_id.as_deref().unwrap_or("none")
                )
            }
            Refusal::Protected(r) => write!(f, "role {r:?} is protected"),
            Refusal::MasterWouldInheritIam(r) => {
                write!(
                    f,
                    "the master user inherits {r:?}; granting the IAM role would disable its password login"
                )
            }
            Refusal::RenameTargetExists { from, to } => {
                write!(f, "cannot rename {from:?}: role {to:?} already exists")
            }
        }
    }
}

/// What to do for one user on one target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserPlan {
    pub okta_id: String,
    /// The role that carries this user's access after the plan (to record in the state schema).
    pub role: Option<String>,
    pub entitled: bool,
    pub steps: Vec<Step>,
    pub refusals: Vec<Refusal>,
    /// Kill live sessions after commit: access was removed (login disabled, or a role revoked, since a
    /// session that did `SET ROLE` keeps the revoked role's rights until it ends).
    pub terminate_sessions: bool,
    /// The user is not entitled, yet a refusal leaves their role able to log in or holding mapped roles.
    /// Raised as an alarm and counted as drift.
    pub access_left: bool,
    /// Roles that held the offboarded role: their sessions are terminated with the role's own.
    pub holders: Vec<String>,
}

/// The actual roles relevant to one user: the one recorded for them, and the one their login maps to.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActualRoles<'a> {
    pub recorded: Option<&'a ActualRole>,
    pub by_login: Option<&'a ActualRole>,
}

/// The role name for a login, unless it is protected (`ctx.protected`: the master user, our own roles,
/// mapped and configured protected roles): a login must never map onto one of those.
pub fn role_name_for(ctx: &PlanContext<'_>, login: &str) -> Result<String, NameRejected> {
    let name = ctx.mapping.naming.role_name(login, ctx.names)?;
    if ctx.protected.contains(&name) {
        return Err(NameRejected::Protected(name));
    }
    Ok(name)
}

pub fn plan_user(facts: &UserFacts, actual: ActualRoles<'_>, ctx: &PlanContext<'_>) -> UserPlan {
    let mapping = ctx.mapping;
    let okta_id = facts.okta_id.as_str();
    let mapped = mapping.roles_for(&facts.groups);
    let active = matches!(facts.status, None | Some(UserStatus::Active));
    let entitled = active && !mapped.is_empty();
    let mut plan = UserPlan {
        okta_id: okta_id.to_owned(),
        entitled,
        ..UserPlan::default()
    };

    let ours = |a: &&ActualRole| {
        (a.managed && a.okta_id.as_deref() == Some(okta_id))
            || a.recorded_for.as_deref() == Some(okta_id)
    };
    let current = actual
        .recorded
        .filter(ours)
        .or(actual.by_login.filter(ours));
    let desired_name = facts
        .login
        .as_deref()
        .map(|l| role_name_for(ctx, l))
        .unwrap_or(Err(NameRejected::Empty));
    // A role with the login's name that is not ours.
    let foreign = actual.by_login.filter(|a| !ours(a));

    let managed = mapping.managed_roles();
    let base = match current {
        Some(cur) if cur.untouchable => {
            plan.refusals.push(Refusal::Protected(cur.name.clone()));
            plan.role = Some(cur.name.clone());
            plan.access_left = !entitled
                && (cur.can_login || cur.iam || cur.member_of.iter().any(|r| managed.contains(r)));
            return plan;
        }
        Some(cur) => {
            let mut role = cur.name.clone();
            // A deleted user's role keeps its name (Okta renames the user on deletion).
            let deleted = facts.status == Some(UserStatus::Deleted);
            match &desired_name {
                // Only an entitled user is renamed: an offboarding never waits on (or fails with) a rename.
                Ok(new) if *new != cur.name && !deleted && entitled => match foreign {
                    Some(_) => plan.refusals.push(Refusal::RenameTargetExists {
                        from: role.clone(),
                        to: new.clone(),
                    }),
                    None => {
                        plan.steps.push(Step::Rename {
                            from: role.clone(),
                            to: new.clone(),
                        });
                        role = new.clone();
                    }
                },
                Err(e) if entitled => plan.refusals.push(Refusal::NameRejected(e.clone())),
                _ => {}
            }
            ActualRole {
                name: role,
                ..cur.clone()
            }
        }
        None if !entitled => return plan,
        None => match (desired_name, foreign) {
            (Err(e), _) => {
                plan.refusals.push(Refusal::NameRejected(e));
                return plan;
            }
            (Ok(name), Some(other)) => {
                plan.refusals.push(if other.protected {
                    Refusal::Protected(name)
                } else if other.managed {
                    Refusal::OwnedByOtherUser {
                        role: name,
                        okta_id: other.okta_id.clone(),
                    }
                } else {
                    Refusal::UnmanagedRoleExists(name)
                });
                return plan;
            }
            (Ok(name), None) => {
                plan.steps.push(Step::Create { role: name.clone() });
                ActualRole {
                    name,
                    managed: true,
                    okta_id: Some(okta_id.to_owned()),
                    ..ActualRole::default()
                }
            }
        },
    };
    let role = base.name.clone();
    plan.role = Some(role.clone());

    let have: BTreeSet<String> = base.member_of.intersection(&managed).cloned().collect();
    let want: BTreeSet<String> = if entitled { mapped } else { BTreeSet::new() };

    if !entitled && base.can_login {
        plan.steps.push(Step::SetLogin {
            role: role.clone(),
            login: false,
        });
    }
    let mut revoked = false;
    for granted in have.difference(&want) {
        plan.steps.push(Step::Revoke {
            granted: granted.clone(),
            from: role.clone(),
        });
        revoked = true;
    }
    for granted in want.difference(&have) {
        plan.steps.push(Step::Grant {
            granted: granted.clone(),
            to: role.clone(),
        });
    }
    let mut iam_ok = true;
    if entitled && !base.iam {
        if base.master_inherits {
            plan.refusals
                .push(Refusal::MasterWouldInheritIam(role.clone()));
            iam_ok = false;
        } else {
            plan.steps.push(Step::EnableIam { role: role.clone() });
        }
    }
    if !entitled && base.iam && ctx.iam_removed_on_offboard {
        plan.steps.push(Step::DisableIam { role: role.clone() });
        revoked = true;
    }
    if !entitled {
        // Whoever was made a member of the role (PostgreSQL 14 lets a user grant her own role) loses it.
        for holder in &base.held_by {
            plan.steps.push(Step::Revoke {
                granted: role.clone(),
                from: holder.clone(),
            });
        }
        plan.holders = base.held_by.iter().cloned().collect();
    }
    if entitled && !base.can_login && iam_ok {
        plan.steps.push(Step::SetLogin {
            role: role.clone(),
            login: true,
        });
    }
    // Sessions are checked for every offboarded role we manage, so that a run that was cut short after
    // commit is finished by the next one.
    plan.terminate_sessions = current.is_some() && (!entitled || revoked);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::UsernameSource;

    const ID: &str = "00u7jdoeAbCdEf0h8";
    const NAME: &str = "jane.doe@acme.com";

    fn mapping() -> Mapping {
        Mapping::from_parts(
            vec![
                ("00gREAD".into(), vec!["app_ro".into()]),
                ("00gWRITE".into(), vec!["app_rw".into(), "app_ro".into()]),
            ],
            Naming {
                source: UsernameSource::Login,
                lowercase: true,
            },
        )
    }

    /// Plan for PostgreSQL with the protected names of [`protected`].
    fn plan(f: &UserFacts, a: ActualRoles<'_>, m: &Mapping) -> UserPlan {
        let protected = protected();
        let ctx = PlanContext {
            mapping: m,
            protected: &protected,
            names: &crate::naming::POSTGRES_NAMES,
            iam_removed_on_offboard: true,
        };
        plan_user(f, a, &ctx)
    }

    fn protected() -> BTreeSet<String> {
        ["master", "app_ro", "app_rw", "rds_iam", "breakglass"]
            .map(String::from)
            .into()
    }

    fn group(id: &str, name: &str) -> GroupRef {
        GroupRef {
            id: id.into(),
            name: name.into(),
        }
    }

    fn facts(status: Option<UserStatus>, groups: Vec<GroupRef>) -> UserFacts {
        UserFacts {
            okta_id: ID.into(),
            login: Some("Jane.Doe@acme.com".into()),
            status,
            groups,
            role_name: None,
        }
    }

    /// Our role; `rds_iam` among `member_of` means it authenticates with IAM.
    fn ours(login: bool, member_of: &[&str]) -> ActualRole {
        ActualRole {
            name: NAME.into(),
            managed: true,
            okta_id: Some(ID.into()),
            can_login: login,
            iam: member_of.contains(&"rds_iam"),
            member_of: member_of
                .iter()
                .filter(|s| **s != "rds_iam")
                .map(|s| s.to_string())
                .collect(),
            ..ActualRole::default()
        }
    }

    fn iam(on: bool) -> Step {
        if on {
            Step::EnableIam { role: NAME.into() }
        } else {
            Step::DisableIam { role: NAME.into() }
        }
    }

    fn by_login(a: &ActualRole) -> ActualRoles<'_> {
        ActualRoles {
            recorded: None,
            by_login: Some(a),
        }
    }

    fn grant(g: &str) -> Step {
        Step::Grant {
            granted: g.into(),
            to: NAME.into(),
        }
    }
    fn revoke(g: &str) -> Step {
        Step::Revoke {
            granted: g.into(),
            from: NAME.into(),
        }
    }
    fn login(on: bool) -> Step {
        Step::SetLogin {
            role: NAME.into(),
            login: on,
        }
    }

    #[test]
    fn onboarding_creates_grants_then_enables_login() {
        let p = plan(
            &facts(None, vec![group("00gREAD", "readers")]),
            ActualRoles::default(),
            &mapping(),
        );
        assert_eq!(
            p.steps,
            vec![
                Step::Create { role: NAME.into() },
                grant("app_ro"),
                iam(true),
                login(true)
            ]
        );
        assert!(p.entitled && !p.terminate_sessions && p.refusals.is_empty());
        assert_eq!(p.role.as_deref(), Some(NAME));
    }

    #[test]
    fn groups_match_by_id_only_and_union_their_roles() {
        let f = facts(
            Some(UserStatus::Active),
            vec![group("00gREAD", "x"), group("00gWRITE", "writers")],
        );
        let p = plan(&f, ActualRoles::default(), &mapping());
        assert!(p.steps.contains(&grant("app_rw")) && p.steps.contains(&grant("app_ro")));
        // A group named like a mapped group's id is not that group.
        let impostor = facts(None, vec![group("00gEVIL", "00gWRITE")]);
        assert_eq!(
            plan(&impostor, ActualRoles::default(), &mapping()),
            UserPlan {
                okta_id: ID.into(),
                ..UserPlan::default()
            }
        );
    }

    #[test]
    fn converged_user_needs_nothing() {
        let a = ours(
            true,
            &["app_ro", "rds_iam", "okta_rds_sync_managed", "unrelated"],
        );
        let p = plan(
            &facts(None, vec![group("00gREAD", "")]),
            by_login(&a),
            &mapping(),
        );
        assert!(p.steps.is_empty() && p.refusals.is_empty() && !p.terminate_sessions);
    }

    #[test]
    fn leaving_one_group_revokes_only_what_no_other_group_grants() {
        let a = ours(true, &["app_ro", "app_rw", "rds_iam"]);
        let p = plan(
            &facts(None, vec![group("00gREAD", "")]),
            by_login(&a),
            &mapping(),
        );
        assert_eq!(p.steps, vec![revoke("app_rw")]);
        assert!(
            p.terminate_sessions,
            "a revoked role may be held by SET ROLE in a live session"
        );
    }

    #[test]
    fn offboarding_disables_login_first_then_revokes_and_kills_sessions() {
        let a = ours(true, &["app_ro", "rds_iam", "unrelated"]);
        for status in [
            UserStatus::Deprovisioned,
            UserStatus::Suspended,
            UserStatus::Deleted,
        ] {
            let p = plan(
                &facts(Some(status), vec![group("00gREAD", "")]),
                by_login(&a),
                &mapping(),
            );
            assert_eq!(
                p.steps,
                vec![login(false), revoke("app_ro"), iam(false)],
                "{status:?}"
            );
            assert!(p.terminate_sessions && !p.entitled);
        }
        // Removed from the last group while active: same result.
        let p = plan(&facts(None, vec![]), by_login(&a), &mapping());
        assert_eq!(p.steps, vec![login(false), revoke("app_ro"), iam(false)]);
    }

    #[test]
    fn already_offboarded_role_still_gets_a_session_check() {
        let a = ours(false, &[]);
        let p = plan(
            &facts(Some(UserStatus::Deprovisioned), vec![]),
            by_login(&a),
            &mapping(),
        );
        assert!(p.steps.is_empty() && p.terminate_sessions);
    }

    #[test]
    fn reactivation_restores_grants_then_login() {
        let a = ours(false, &[]);
        let p = plan(
            &facts(Some(UserStatus::Active), vec![group("00gREAD", "")]),
            by_login(&a),
            &mapping(),
        );
        assert_eq!(p.steps, vec![grant("app_ro"), iam(true), login(true)]);
    }

    #[test]
    fn unknown_user_without_entitlement_is_left_alone() {
        let p = plan(
            &facts(Some(UserStatus::Deprovisioned), vec![]),
            ActualRoles::default(),
            &mapping(),
        );
        assert!(p.steps.is_empty() && p.refusals.is_empty() && p.role.is_none());
    }

    #[test]
    fn unmanaged_or_foreign_role_with_the_same_name_is_refused_and_untouched() {
        let f = facts(None, vec![group("00gREAD", "")]);
        let unmanaged = ActualRole {
            name: NAME.into(),
            can_login: true,
            ..ActualRole::default()
        };
        let p = plan(&f, by_login(&unmanaged), &mapping());
        assert!(p.steps.is_empty());
        assert_eq!(p.refusals, vec![Refusal::UnmanagedRoleExists(NAME.into())]);
        // Offboarding never touches it either.
        let off = facts(Some(UserStatus::Deprovisioned), vec![]);
        assert!(
            plan(&off, by_login(&unmanaged), &mapping())
                .steps
                .is_empty()
        );

        let other = ActualRole {
            okta_id: Some("00uOTHER".into()),
            ..ours(true, &["rds_iam"])
        };
        let p = plan(&f, by_login(&other), &mapping());
        assert!(p.steps.is_empty());
        assert_eq!(p.refusals[0].code(), "owned_by_other_user");
        assert!(plan(&off, by_login(&other), &mapping()).steps.is_empty());
    }

    #[test]
    fn our_roles_are_offboarded_whatever_privileges_they_were_given() {
        // Mapped to a privileged role (allow_privileged), or made a superuser by a DBA: still ours.
        let f = facts(Some(UserStatus::Deprovisioned), vec![]);
        let mut privileged = ours(true, &["rds_iam", "app_ro"]);
        privileged.protected = true;
        let p = plan(&f, by_login(&privileged), &mapping());
        assert_eq!(p.steps, vec![login(false), revoke("app_ro"), iam(false)]);
        assert!(p.terminate_sessions && p.refusals.is_empty() && !p.access_left);
    }

    #[test]
    fn the_master_and_rds_roles_are_never_altered_even_if_marked_as_ours() {
        let mut master = ours(true, &["app_ro"]);
        master.untouchable = true;
        let off = facts(Some(UserStatus::Deprovisioned), vec![]);
        let p = plan(&off, by_login(&master), &mapping());
        assert!(p.steps.is_empty() && !p.terminate_sessions);
        assert_eq!(p.refusals, vec![Refusal::Protected(NAME.into())]);
        assert!(p.access_left, "a non-entitled user keeps access: an alarm");
        let on = plan(
            &facts(None, vec![group("00gREAD", "")]),
            by_login(&master),
            &mapping(),
        );
        assert!(on.steps.is_empty() && !on.access_left);
    }

    #[test]
    fn protected_roles_that_are_not_ours_are_never_taken_over() {
        let f = facts(None, vec![group("00gREAD", "")]);
        let other = ActualRole {
            name: NAME.into(),
            protected: true,
            can_login: true,
            ..ActualRole::default()
        };
        let p = plan(&f, by_login(&other), &mapping());
        assert!(p.steps.is_empty());
        assert_eq!(p.refusals, vec![Refusal::Protected(NAME.into())]);
    }

    #[test]
    fn a_login_never_maps_onto_a_protected_name() {
        let mut f = facts(None, vec![group("00gREAD", "")]);
        for login in ["master", "breakglass", "app_rw", "rds_iam"] {
            f.login = Some(login.into());
            let p = plan(&f, ActualRoles::default(), &mapping());
            assert!(p.steps.is_empty(), "{login}");
            assert_eq!(
                p.refusals,
                vec![Refusal::NameRejected(if login == "rds_iam" {
                    NameRejected::ReservedPrefix("rds_")
                } else {
                    NameRejected::Protected(login.into())
                })]
            );
        }
        // Nor is an existing role of ours renamed onto one.
        f.login = Some("breakglass".into());
        let a = ours(true, &["app_ro", "rds_iam"]);
        let p = plan(&f, by_login(&a), &mapping());
        assert!(p.steps.iter().all(|s| !matches!(s, Step::Rename { .. })));
    }

    #[test]
    fn iam_role_is_not_granted_where_the_master_inherits_it() {
        let mut a = ours(false, &[]);
        a.master_inherits = true;
        let p = plan(
            &facts(None, vec![group("00gREAD", "")]),
            by_login(&a),
            &mapping(),
        );
        assert_eq!(p.steps, vec![grant("app_ro")], "no rds_iam and no LOGIN");
        assert_eq!(
            p.refusals,
            vec![Refusal::MasterWouldInheritIam(NAME.into())]
        );
    }

    #[test]
    fn login_change_renames_the_recorded_role() {
        let old = ActualRole {
            name: "jane.roe@acme.com".into(),
            ..ours(true, &["app_ro", "rds_iam"])
        };
        let f = facts(None, vec![group("00gREAD", "")]);
        let p = plan(
            &f,
            ActualRoles {
                recorded: Some(&old),
                by_login: None,
            },
            &mapping(),
        );
        assert_eq!(
            p.steps,
            vec![Step::Rename {
                from: "jane.roe@acme.com".into(),
                to: NAME.into()
            }]
        );
        assert_eq!(p.role.as_deref(), Some(NAME));
        // The new name is taken by someone else's role: keep the old name, keep converging it.
        let taken = ActualRole {
            name: NAME.into(),
            ..ActualRole::default()
        };
        let p = plan(
            &f,
            ActualRoles {
                recorded: Some(&old),
                by_login: Some(&taken),
            },
            &mapping(),
        );
        assert!(p.steps.is_empty());
        assert_eq!(p.refusals[0].code(), "rename_target_exists");
        assert_eq!(p.role.as_deref(), Some("jane.roe@acme.com"));
    }

    #[test]
    fn a_deleted_user_s_role_keeps_its_name() {
        let old = ActualRole {
            name: "jane.roe@acme.com".into(),
            ..ours(true, &["app_ro", "rds_iam"])
        };
        let mut f = facts(Some(UserStatus::Deleted), vec![group("00gREAD", "")]);
        f.login = Some("renamed@acme.com".into());
        let p = plan(
            &f,
            ActualRoles {
                recorded: Some(&old),
                by_login: None,
            },
            &mapping(),
        );
        assert!(p.steps.iter().all(|s| !matches!(s, Step::Rename { .. })));
        assert_eq!(p.role.as_deref(), Some("jane.roe@acme.com"));
        assert!(p.steps.contains(&Step::SetLogin {
            role: "jane.roe@acme.com".into(),
            login: false
        }));
    }

    #[test]
    fn rejected_names_are_refused_not_truncated() {
        let mut f = facts(None, vec![group("00gREAD", "")]);
        f.login = Some(format!("{}@acme.com", "x".repeat(200)));
        let p = plan(&f, ActualRoles::default(), &mapping());
        assert!(p.steps.is_empty());
        assert_eq!(p.refusals[0].code(), "name_rejected");
        assert!(p.refusals[0].to_string().contains("209 bytes"));
    }
}
