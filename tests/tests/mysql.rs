//! MySQL-family targets against a real MariaDB (TLS only, a master without SUPER, `auth_pam` standing in for
//! RDS's IAM plugin, `mysql.rds_kill` as RDS defines it): account shape, roles active at login, offboarding
//! with live sessions killed before the answer, reactivation, hostile names, unmanaged accounts, the master,
//! rotation, duplicates and order, outage and queue, reconcile and dry run, and a PostgreSQL and a MariaDB
//! target converging from the same deliveries.

use lambda_http::http::StatusCode;
use mysql_async::prelude::Queryable;
use okta_hook::{HookApp, handle};
use okta_rds_sync_tests::mariadb::{MyEnv, mariadb};
use okta_rds_sync_tests::okta::{User, body_json, delivery, event, post};
use okta_rds_sync_tests::{READERS_GROUP, TestEnv, WRITERS_GROUP, set};
use serde_json::Value;

const ADD: &str = "group.user_membership.add";
const REMOVE: &str = "group.user_membership.remove";
const READERS: (&str, &str) = (READERS_GROUP, "eng-prod-access");
const WRITERS: (&str, &str) = (WRITERS_GROUP, "eng-prod-writers");

/// A PostgreSQL env (secrets, hook) and a MariaDB env under the same prefix.
async fn envs() -> (TestEnv, MyEnv) {
    let env = TestEnv::new().await;
    let my = MyEnv::new(&env.prefix, &env.sm).await;
    (env, my)
}

/// A config with only the MariaDB target (`my`).
fn mysql_only(env: &TestEnv, my: &MyEnv) -> String {
    let pg = env.config_toml();
    let hook = &pg[..pg.find("[[targets]]").unwrap()];
    format!("{hook}\n{}", my.target_toml("my"))
}

async fn send(app: &HookApp, id: &str, events: Vec<Value>) -> Value {
    let response = handle(app, post(&delivery(id, events))).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    body_json(&response)
}

#[tokio::test]
async fn onboarding_creates_an_iam_account_whose_roles_are_active_at_login() {
    let (env, my) = envs().await;
    let app = env.app_from(&mysql_only(&env, &my)).await;
    let u = User::new("00uMYSQL0001", &env.login("jane"));
    let s = send(
        &app,
        "d1",
        vec![event(ADD, Some(&u), Some(READERS), 1, "e1")],
    )
    .await;
    assert_eq!(s["targets"][0]["failed"], 0, "{s}");
    let name = env.login("jane");
    let (locked, plugin, auth, default_role) = my.account(&name).await.expect("account created");
    assert_eq!(
        (locked, plugin.as_str(), auth.as_str()),
        (false, "pam", "RDS"),
        "IDENTIFIED WITH pam AS 'RDS', unlocked"
    );
    assert_eq!(default_role, "ors_00uMYSQL0001");
    assert_eq!(
        my.roles_of(&name, "%").await,
        set(&[&my.marker_role, "ors_00uMYSQL0001"])
    );
    assert_eq!(
        my.roles_of("ors_00uMYSQL0001", "").await,
        set(&[&my.readonly_role])
    );
    // A real login reads what only the mapped role may read, without SET ROLE.
    let mut session = my.open_session_as(&name).await;
    let x: Option<i64> = session
        .query_first(format!("SELECT x FROM {}.secret", my.data))
        .await
        .expect("the mapped role is active at login");
    assert_eq!(x, Some(42));
    assert!(
        session
            .query_drop(format!("INSERT INTO {}.secret VALUES (1)", my.data))
            .await
            .is_err(),
        "and nothing more"
    );
    let _ = mariadb();
}

#[tokio::test]
async fn groups_add_up_partial_removal_revokes_only_what_no_group_grants_and_offboarding_kills_sessions()
 {
    let (env, my) = envs().await;
    let app = env.app_from(&mysql_only(&env, &my)).await;
    let u = User::new("00uMYSQL0002", &env.login("bob"));
    let own = "ors_00uMYSQL0002";
    send(
        &app,
        "d1",
        vec![
            event(ADD, Some(&u), Some(READERS), 1, "e1"),
            event(ADD, Some(&u), Some(WRITERS), 2, "e2"),
        ],
    )
    .await;
    assert_eq!(
        my.roles_of(own, "").await,
        set(&[&my.readonly_role, &my.readwrite_role])
    );
    send(
        &app,
        "d2",
        vec![event(REMOVE, Some(&u), Some(WRITERS), 3, "e3")],
    )
    .await;
    assert_eq!(my.roles_of(own, "").await, set(&[&my.readonly_role]));

    let name = env.login("bob");
    let mut sessions = vec![
        my.open_session_as(&name).await,
        my.open_session_as(&name).await,
    ];
    let s = send(
        &app,
        "d3",
        vec![event("user.lifecycle.deactivate", Some(&u), None, 4, "e4")],
    )
    .await;
    assert_eq!(s["targets"][0]["sessions_terminated"], 2, "{s}");
    for session in &mut sessions {
        assert!(
            session.query_drop("SELECT 1").await.is_err(),
            "killed before the answer"
        );
    }
    let (locked, plugin, _, _) = my.account(&name).await.unwrap();
    assert!(locked, "ACCOUNT LOCK");
    assert_eq!(
        plugin, "mysql_native_password",
        "(the test's password; IAM stays otherwise)"
    );
    assert!(my.roles_of(own, "").await.is_empty());
    assert!(
        mariadb().connect(&name, "session-pw").await.is_err(),
        "a locked account cannot log in"
    );
    let audit = my.audit().await;
    let kill = audit
        .iter()
        .rev()
        .find(|a| a.1 == "terminate_sessions")
        .expect("audited");
    assert_eq!(
        (kill.2.as_str(), kill.3.as_str()),
        ("applied", "2 terminated, 0 remaining")
    );

    // Reactivation restores the grant and unlocks.
    send(
        &app,
        "d4",
        vec![event("user.lifecycle.activate", Some(&u), None, 5, "e5")],
    )
    .await;
    let (locked, plugin, auth, _) = my.account(&name).await.unwrap();
    assert_eq!(
        (locked, plugin.as_str(), auth.as_str()),
        (false, "pam", "RDS")
    );
    assert_eq!(my.roles_of(own, "").await, set(&[&my.readonly_role]));
}
