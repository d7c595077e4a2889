//! Safety rules (DESIGN.md), offboarding of live sessions, TLS, rotation and several targets, each against
//! real PostgreSQL over TLS with SCRAM and moto's Secrets Manager.

use lambda_http::http::StatusCode;
use okta_hook::{HookApp, handle};
use okta_rds_sync::db::postgres::sql::quote_ident;
use okta_rds_sync_tests::okta::{User, body_json, delivery, event, post};
use okta_rds_sync_tests::{READERS_GROUP, TestEnv, servers, set};
use serde_json::Value;

const ADD: &str = "group.user_membership.add";
const REMOVE: &str = "group.user_membership.remove";
const READERS: (&str, &str) = (READERS_GROUP, "eng-prod-access");

async fn send(app: &HookApp, id: &str, events: Vec<Value>) -> (StatusCode, Value) {
    let response = handle(app, post(&delivery(id, events))).await;
    (response.status(), body_json(&response))
}

async fn send_ok(app: &HookApp, id: &str, events: Vec<Value>) -> Value {
    let (status, body) = send(app, id, events).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The user joins readers: an entitled, managed user to start from.
async fn onboard(app: &HookApp, u: &User) {
    send_ok(app, "d1", vec![event(ADD, Some(u), Some(READERS), 1, "a")]).await;
}

#[tokio::test]
async fn offboarding_kills_live_sessions_and_records_time_to_zero() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00u7jdoeAbCdEf0h8", &env.login("jane"));
    onboard(&app, &u).await;
    let role = env.login("jane");
    let session = env.open_session_as(&role).await;
    let second = env.open_session_as(&role).await;
    session
        .simple_query("SELECT 1")
        .await
        .expect("session works while entitled");

    let s = send_ok(
        &app,
        "d2",
        vec![event("user.lifecycle.deactivate", Some(&u), None, 2, "b")],
    )
    .await;
    assert_eq!(s["targets"][0]["sessions_terminated"], 2, "{s}");
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "live session must be gone"
    );
    assert!(second.simple_query("SELECT 1").await.is_err());
    let after = env.role(&role).await.unwrap();
    assert!(!after.can_login);
    assert_eq!(after.member_of, set(&[&env.marker_role]));
    assert!(
        servers()
            .connect(&env.database, &role, "session-pw")
            .await
            .is_err(),
        "NOLOGIN: no new session"
    );

    let audit = env.audit().await;
    let actions: Vec<&str> = audit
        .iter()
        .filter(|a| a.event_uuids == "b")
        .map(|a| a.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "disable_login",
            "revoke",
            "disable_iam",
            "terminate_sessions"
        ],
        "NOLOGIN first, kill last"
    );
    let kill = audit
        .iter()
        .find(|a| a.action == "terminate_sessions")
        .unwrap();
    assert_eq!(
        (kill.outcome.as_str(), kill.detail.as_str()),
        ("applied", "2 terminated, 0 remaining")
    );
    assert!(
        kill.duration_ms > 0.0 && kill.duration_ms < 3000.0,
        "time from receipt to zero sessions: {}",
        kill.duration_ms
    );
}

#[tokio::test]
async fn losing_a_role_ends_sessions_that_could_hold_it_with_set_role() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00u7jdoeAbCdEf0h8", &env.login("jane"));
    let writers = ("00g2wrtrsQRSTuvw0h8", "eng-prod-writers");
    send_ok(
        &app,
        "d1",
        vec![
            event(ADD, Some(&u), Some(READERS), 1, "a"),
            event(ADD, Some(&u), Some(writers), 2, "b"),
        ],
    )
    .await;
    let session = env.open_session_as(&env.login("jane")).await;
    session
        .batch_execute(&format!("SET ROLE {}", env.readwrite_role))
        .await
        .unwrap();
    send_ok(
        &app,
        "d2",
        vec![event(REMOVE, Some(&u), Some(writers), 3, "c")],
    )
    .await;
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "a session holding the revoked role is ended"
    );
    assert!(
        env.role(&env.login("jane")).await.unwrap().can_login,
        "the user keeps readers access"
    );
}

#[tokio::test]
async fn an_unmanaged_role_with_the_same_name_is_reported_and_left_alone() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let name = env.login("jane");
    env.superuser()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {} LOGIN",
            quote_ident(&name).unwrap()
        ))
        .await
        .unwrap();
    let u = User::new("00u7jdoeAbCdEf0h8", &name);
    let s = send_ok(
        &app,
        "d1",
        vec![event(ADD, Some(&u), Some(READERS), 1, "a")],
    )
    .await;
    assert_eq!(
        (
            s["targets"][0]["changes"].as_u64(),
            s["targets"][0]["refused"].as_u64()
        ),
        (Some(0), Some(1))
    );
    send_ok(
        &app,
        "d2",
        vec![event("user.lifecycle.deactivate", Some(&u), None, 2, "b")],
    )
    .await;
    let role = env.role(&name).await.unwrap();
    assert!(
        role.can_login && role.member_of.is_empty() && role.comment.is_none(),
        "untouched: {role:?}"
    );
    let audit = env.audit().await;
    assert_eq!(audit.len(), 1, "{audit:#?}");
    assert_eq!(
        (audit[0].action.as_str(), audit[0].outcome.as_str()),
        ("unmanaged_role_exists", "refused")
    );
}

#[tokio::test]
async fn protected_roles_are_never_altered() {
    let env = TestEnv::new().await;
    let su = env.superuser().await;
    let superuser_login = format!("{}_dba", env.prefix);
    su.batch_execute(&format!("CREATE ROLE {superuser_login} LOGIN SUPERUSER"))
        .await
        .unwrap();
    let configured = format!("{}_breakglass", env.prefix);
    su.batch_execute(&format!("CREATE ROLE {configured} LOGIN"))
        .await
        .unwrap();
    let app = env
        .app_from(&env.config_with("", &format!("protected_roles = [\"{configured}\"]")))
        .await;
    // Okta logins that map onto the master user, a superuser and a configured protected role.
    let users = [
        (&env.master, "00uMASTER1"),
        (&superuser_login, "00uDBA0001"),
        (&configured, "00uBREAK01"),
    ];
    for (i, (login, id)) in users.iter().enumerate() {
        let u = User::new(id, login);
        send_ok(
            &app,
            &format!("a{i}"),
            vec![event(ADD, Some(&u), Some(READERS), 1, &format!("a{i}"))],
        )
        .await;
        send_ok(
            &app,
            &format!("d{i}"),
            vec![event(
                "user.lifecycle.deactivate",
                Some(&u),
                None,
                2,
                &format!("d{i}"),
            )],
        )
        .await;
    }
    for (login, _) in users {
        let r = env.role(login).await.unwrap();
        assert!(
            r.can_login && r.comment.is_none(),
            "{login} untouched: {r:?}"
        );
    }
    let refusals: Vec<String> = env
        .audit()
        .await
        .into_iter()
        .map(|a| format!("{}:{}", a.action, a.outcome))
        .collect();
    // Nothing but refusals: the master and configured protected names are refused as names; a superuser's
    // role is not ours.
    assert_eq!(
        refusals,
        [
            "name_rejected:refused",
            "protected_role:refused",
            "name_rejected:refused"
        ]
    );
    // The master still logs in with its password.
    servers()
        .connect(&env.database, &env.master, &env.master_password)
        .await
        .expect("master login works");
}

#[tokio::test]
async fn the_master_never_inherits_rds_iam() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00u7jdoeAbCdEf0h8", &env.login("jane"));
    let role = env.login("jane");
    onboard(&app, &u).await;
    send_ok(
        &app,
        "d2",
        vec![event("user.lifecycle.suspend", Some(&u), None, 2, "b")],
    )
    .await;
    // Someone makes the master a member of jane's role; giving jane rds_iam now would lock the master out.
    let q = quote_ident(&role).unwrap();
    env.grant_inherited(&q, &env.master).await;
    let s = send_ok(
        &app,
        "d3",
        vec![event("user.lifecycle.unsuspend", Some(&u), None, 3, "c")],
    )
    .await;
    assert_eq!(s["targets"][0]["refused"], 1, "{s}");
    let r = env.role(&role).await.unwrap();
    assert!(!r.can_login && !r.member_of.contains("rds_iam"), "{r:?}");
    assert!(
        env.audit()
            .await
            .iter()
            .any(|a| a.action == "master_would_inherit_iam" && a.outcome == "refused")
    );
    servers()
        .connect(&env.database, &env.master, &env.master_password)
        .await
        .expect("master login works");
}

#[tokio::test]
async fn a_target_whose_master_already_has_rds_iam_is_refused() {
    let env = TestEnv::new().await;
    env.grant_inherited("rds_iam", &env.master).await;
    let app = env.app().await;
    let u = User::new("00u7jdoeAbCdEf0h8", &env.login("jane"));
    let (status, body) = send(
        &app,
        "d1",
        vec![event(ADD, Some(&u), Some(READERS), 1, "a")],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["targets"][0]["error"], "failed", "{body}");
    assert!(
        !body.to_string().contains("rds_iam"),
        "no internals in the response"
    );
    assert!(env.role(&env.login("jane")).await.is_none());
}

#[tokio::test]
async fn privileged_mappings_are_refused_unless_allowed() {
    let env = TestEnv::new().await;
    let admin = format!("{}_admin", env.prefix);
    env.superuser()
        .await
        .batch_execute(&format!("CREATE ROLE {admin} NOLOGIN CREATEROLE"))
        .await
        .unwrap();
    env.let_master_grant(&admin).await;
    let grant = |allow: bool| {
        format!(
            "{}\n[[grants]]\nokta_group = \"00gADMINS1\"\ntarget = \"main\"\nroles = [\"{admin}\"]\nallow_privileged = {allow}\n",
            env.config_toml()
        )
    };
    let u = User::new("00u7jdoeAbCdEf0h8", &env.login("jane"));
    let refused = env.app_from(&grant(false)).await;
    let (status, _) = send(
        &refused,
        "d1",
        vec![event(ADD, Some(&u), Some(("00gADMINS1", "admins")), 1, "a")],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(env.role(&env.login("jane")).await.is_none());

    let allowed = env.app_from(&grant(true)).await;
    send_ok(
        &allowed,
        "d2",
        vec![event(ADD, Some(&u), Some(("00gADMINS1", "admins")), 1, "a")],
    )
    .await;
    assert!(
        env.role(&env.login("jane"))
            .await
            .unwrap()
            .member_of
            .contains(&admin)
    );
}

#[tokio::test]
async fn a_mapped_role_that_does_not_exist_stops_the_target() {
    let env = TestEnv::new().await;
    let toml = format!(
        "{}\n[[grants]]\nokta_group = \"00gX\"\ntarget = \"main\"\nroles = [\"{}_nope\"]\n",
        env.config_toml(),
        env.prefix
    );
    let app = env.app_from(&toml).await;
    let u = User::new("00u7jdoeAbCdEf0h8", &env.login("jane"));
    let (status, _) = send(
        &app,
        "d1",
        vec![event(ADD, Some(&u), Some(READERS), 1, "a")],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn hostile_and_long_names_are_quoted_exactly_or_refused() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let p = &env.prefix;
    let hostile = [
        format!("o'brien\"; drop role {p}_master; --@{p}.acme.com"),
        format!("zoë.ünïcödé🚀@{p}.acme.com"),
        format!("semi;colon$$dollar\\back@{p}.acme.com"),
    ];
    let exactly_63 = format!(
        "{}@{p}.acme.com",
        "x".repeat(63 - format!("@{p}.acme.com").len())
    );
    let too_long = format!("{}@{p}.acme.com", "y".repeat(200));
    let mut events = Vec::new();
    for (i, login) in hostile.iter().chain([&exactly_63, &too_long]).enumerate() {
        let u = User::new(&format!("00uHOSTILE{i}"), login);
        events.push(event(ADD, Some(&u), Some(READERS), 1, &format!("h{i}")));
    }
    let s = send_ok(&app, "d1", events).await;
    assert_eq!(s["targets"][0]["refused"], 1, "{s}");
    for login in hostile.iter().chain([&exactly_63]) {
        let r = env
            .role(login)
            .await
            .unwrap_or_else(|| panic!("role {login:?} created with its exact name"));
        assert!(r.can_login && r.member_of.contains("rds_iam"));
    }
    assert_eq!(exactly_63.len(), 63);
    assert!(env.role(&too_long).await.is_none());
    assert!(env.role(&too_long[..63]).await.is_none(), "never truncated");
    assert!(
        env.role(&env.master).await.is_some(),
        "the injection attempt dropped nothing"
    );
    let refusal = env
        .audit()
        .await
        .into_iter()
        .find(|a| a.outcome == "refused")
        .unwrap();
    assert_eq!(
        (refusal.action.as_str(), refusal.okta_id.as_str()),
        ("name_rejected", "00uHOSTILE4")
    );
    assert!(
        refusal
            .detail
            .contains(&format!("{} bytes", too_long.len())),
        "{}",
        refusal.detail
    );
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_refused() {
    let env = TestEnv::new().await;
    let toml = env.config_toml().replace(
        &format!("ca_file = \"{}\"", servers().ca_file.display()),
        &format!("ca_file = \"{}\"", servers().other_ca_file.display()),
    );
    let app = env.app_from(&toml).await;
    let u = User::new("00u7jdoeAbCdEf0h8", &env.login("jane"));
    let (status, body) = send(
        &app,
        "d1",
        vec![event(ADD, Some(&u), Some(READERS), 1, "a")],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // The default trust store (the RDS CA bundle) does not trust the test CA either.
    let bundled = env
        .app_from(&toml.replace(
            &format!("ca_file = \"{}\"", servers().other_ca_file.display()),
            "",
        ))
        .await;
    let (status, _) = send(
        &bundled,
        "d1",
        vec![event(ADD, Some(&u), Some(READERS), 1, "a")],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(env.role(&env.login("jane")).await.is_none());
}

#[tokio::test]
async fn a_rotated_master_password_is_re_read_and_nothing_is_lost() {
    let mut env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00u7jdoeAbCdEf0h8", &env.login("jane"));
    onboard(&app, &u).await;
    // RDS rotates the master password; the warm function still has the old one cached.
    env.rotate_master_password("rotated-password-2").await;
    // A failover (or idle timeout) drops the kept connection, forcing a new login.
    env.drop_master_connections().await;
    send_ok(
        &app,
        "d2",
        vec![event("user.lifecycle.deactivate", Some(&u), None, 2, "b")],
    )
    .await;
    assert!(
        !env.role(&env.login("jane")).await.unwrap().can_login,
        "the offboarding was applied"
    );
}

#[tokio::test]
async fn two_targets_on_one_server_are_refused() {
    // Roles are server-wide: two targets on one PostgreSQL server (two of its databases) would undo each
    // other's changes (one target disables the login the other enables). A PostgreSQL and a MariaDB
    // target converging together are tested in mysql.rs.
    let env = TestEnv::new().await;
    let base = env.config_toml();
    let target_block = &base[base.find("[[targets]]").unwrap()..base.find("[[grants]]").unwrap()];
    let second = target_block
        .replace("name = \"main\"", "name = \"second\"")
        .replace(
            &format!("database = \"{}\"", env.database),
            "database = \"other\"",
        );
    let toml = format!("{base}\n{second}");
    let err = okta_rds_sync::config::Config::parse(&toml, std::path::Path::new("t.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("targets[1].host") && err.contains("server-wide"),
        "{err}"
    );
}

#[tokio::test]
async fn a_failed_session_kill_is_finished_by_okta_s_retry() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00u7jdoeAbCdEf0h8", &env.login("jane"));
    onboard(&app, &u).await;
    let session = env.open_session_as(&env.login("jane")).await;
    // The master loses the right to signal other backends: the kill fails after the commit.
    let su = env.superuser().await;
    su.batch_execute(&format!("REVOKE pg_signal_backend FROM {}", env.master))
        .await
        .unwrap();
    let offboard = || vec![event("user.lifecycle.deactivate", Some(&u), None, 2, "b")];
    let (status, _) = send(&app, "d2", offboard()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "Okta must retry");
    assert!(
        !env.role(&env.login("jane")).await.unwrap().can_login,
        "NOLOGIN and revokes were committed"
    );
    session
        .simple_query("SELECT 1")
        .await
        .expect("the session survived the failed kill");
    let failed = env
        .audit()
        .await
        .into_iter()
        .find(|a| a.action == "terminate_sessions")
        .unwrap();
    assert_eq!(failed.outcome, "failed");

    su.batch_execute(&format!("GRANT pg_signal_backend TO {}", env.master))
        .await
        .unwrap();
    let retry = send_ok(&app, "d2", offboard()).await;
    assert_eq!(retry["targets"][0]["duplicate_delivery"], true);
    assert_eq!(retry["targets"][0]["sessions_terminated"], 1, "{retry}");
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "the retry finished the offboarding"
    );
}

/// A superuser whose role holds `role`, with a live session: one the master may not end.
struct SuperuserHolder {
    name: String,
    session: tokio_postgres::Client,
}

impl SuperuserHolder {
    async fn of(env: &TestEnv, role: &str) -> Self {
        let name = format!("{}_holder_su", env.prefix);
        env.superuser()
            .await
            .batch_execute(&format!(
                "CREATE ROLE {name} SUPERUSER LOGIN PASSWORD 'holder-pw'; GRANT {} TO {name}",
                quote_ident(role).unwrap()
            ))
            .await
            .expect("a superuser holding the role");
        let session = servers()
            .connect(&env.database, &name, "holder-pw")
            .await
            .expect("the superuser's session");
        Self { name, session }
    }

    async fn remove(self, env: &TestEnv) {
        let Self { name, session } = self;
        drop(session);
        env.superuser()
            .await
            .batch_execute(&format!("DROP OWNED BY {name}; DROP ROLE {name}"))
            .await
            .expect("drop the holder");
    }
}

/// A session the master may not end (here a superuser's, whose role holds the user's) is left and reported,
/// and Okta is asked to retry, but it must not shield the user's own sessions: `pg_terminate_backend` raises
/// an error for it, which used to fail the whole kill statement.
#[tokio::test]
async fn a_session_the_master_may_not_end_does_not_undo_the_revocation() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00u7jsigAbCdEf0h8", &env.login("sig"));
    onboard(&app, &u).await;
    let role = env.login("sig");
    let holder = SuperuserHolder::of(&env, &role).await;
    let user_session = env.open_session_as(&role).await;

    let (status, body) = send(
        &app,
        "d2",
        vec![event("user.lifecycle.deactivate", Some(&u), None, 2, "b")],
    )
    .await;
    // The superuser's session cannot be ended by the master: the delivery is reported as not done.
    assert_ne!(status, StatusCode::OK, "{body}");

    let after = env.role(&role).await.unwrap();
    assert!(!after.can_login, "the revocation committed: {after:?}");
    assert_eq!(after.member_of, set(&[&env.marker_role]));
    assert!(
        user_session.simple_query("SELECT 1").await.is_err(),
        "the user's own session is gone"
    );
    assert!(
        holder.session.simple_query("SELECT 1").await.is_ok(),
        "the superuser's session is not the master's to end"
    );
    let audit = env.audit().await;
    let outcomes: Vec<(&str, &str, &str)> = audit
        .iter()
        .filter(|a| a.event_uuids == "b")
        .map(|a| (a.action.as_str(), a.outcome.as_str(), a.detail.as_str()))
        .collect();
    let (kill, changes) = outcomes.split_last().expect("audited");
    assert_eq!(changes[0].0, "disable_login", "{outcomes:?}");
    let applied = |action: &str, detail: &str| {
        changes
            .iter()
            .any(|(a, o, d)| *a == action && *o == "applied" && d.contains(detail))
    };
    assert!(
        applied("disable_login", "NOLOGIN")
            && applied("disable_iam", "")
            && applied("revoke", &env.readonly_role),
        "{outcomes:?}"
    );
    // Taking the user's role back from the superuser is audited too; on PostgreSQL 16+ it fails there (the
    // superuser granted it, and a revoke removes only the revoking role's grant), which is said, not hidden.
    assert_eq!(
        *kill,
        ("terminate_sessions", "failed", "1 terminated, 1 remaining")
    );

    holder.remove(&env).await;
}

/// A delivery bigger than `users_per_transaction` converges in batches: sessions one batch cannot end must
/// not hold back the revocations of the batches after it.
#[tokio::test]
async fn sessions_one_batch_cannot_end_do_not_hold_back_the_next_batches() {
    let env = TestEnv::new().await;
    let app = env
        .app_from(&env.config_with("", "users_per_transaction = 1"))
        .await;
    let first = User::new("00u7jba1AbCdEf0h8", &env.login("batch1"));
    let second = User::new("00u7jba2AbCdEf0h8", &env.login("batch2"));
    for (i, u) in [&first, &second].into_iter().enumerate() {
        send_ok(
            &app,
            &format!("on{i}"),
            vec![event(ADD, Some(u), Some(READERS), 1, &format!("a{i}"))],
        )
        .await;
    }
    let holder = SuperuserHolder::of(&env, &first.login).await;
    let second_session = env.open_session_as(&second.login).await;

    // Okta ids order the batches: the first user's (with the session left) comes first.
    let (status, body) = send(
        &app,
        "off",
        vec![
            event("user.lifecycle.deactivate", Some(&first), None, 2, "d1"),
            event("user.lifecycle.deactivate", Some(&second), None, 2, "d2"),
        ],
    )
    .await;
    assert_ne!(status, StatusCode::OK, "{body}");
    for u in [&first, &second] {
        assert!(
            !env.role(&u.login).await.unwrap().can_login,
            "{} revoked",
            u.login
        );
    }
    assert!(
        second_session.simple_query("SELECT 1").await.is_err(),
        "the second batch's session ended"
    );

    holder.remove(&env).await;
}
