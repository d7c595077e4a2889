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

#[tokio::test]
async fn hostile_over_long_unmanaged_and_master_names() {
    let (env, my) = envs().await;
    let app = env.app_from(&mysql_only(&env, &my)).await;
    let p = &env.prefix;
    let hostile = format!("o'brien\"; drop user '{p}_master'@'%'; --\\@{p}.acme.com");
    let too_long = format!("{}@{p}.acme.com", "y".repeat(200));
    let taken = env.login("taken");
    // An account that exists before okta-rds-sync ever sees the user: reported, never taken over.
    let mut root = my.root().await;
    root.query_drop(format!(
        "CREATE USER {} IDENTIFIED BY 'theirs'",
        okta_rds_sync::db::mysql::sql::account(&taken).unwrap()
    ))
    .await
    .unwrap();
    let users = [
        User::new("00uMYHOSTILE1", &hostile),
        User::new("00uMYLONG0001", &too_long),
        User::new("00uMYTAKEN001", &taken),
        User::new("00uMYMASTER01", &my.master),
        User::new("00uMYRESERVE1", &format!("ors_{p}")),
    ];
    let events = users
        .iter()
        .enumerate()
        .map(|(i, u)| event(ADD, Some(u), Some(READERS), 1, &format!("h{i}")))
        .collect();
    let s = send(&app, "d1", events).await;
    assert_eq!(s["targets"][0]["refused"], 4, "{s}");
    let (locked, plugin, _, _) = my
        .account(&hostile.to_lowercase())
        .await
        .expect("the hostile name is created exactly");
    assert_eq!((locked, plugin.as_str()), (false, "pam"));
    assert!(my.account(&too_long).await.is_none(), "never truncated");
    assert!(my.account(&too_long[..128]).await.is_none());
    assert_eq!(
        my.account(&taken).await.unwrap().1,
        "mysql_native_password",
        "the unmanaged account is untouched"
    );
    let actions: Vec<String> = my.audit().await.into_iter().map(|a| a.1).collect();
    for code in ["name_rejected", "unmanaged_role_exists"] {
        assert!(actions.iter().any(|a| a == code), "{code}: {actions:?}");
    }
    // Offboarding the unmanaged account's Okta user never locks it.
    send(
        &app,
        "d2",
        vec![event(
            "user.lifecycle.deactivate",
            Some(&users[2]),
            None,
            2,
            "h9",
        )],
    )
    .await;
    assert!(!my.account(&taken).await.unwrap().0);
    mariadb()
        .connect(&my.master, &my.master_password)
        .await
        .expect("the master is untouched");
    // An ordinary account cannot read the state (say, the lock salt).
    let mut session = my.open_session_as(&hostile.to_lowercase()).await;
    assert!(
        session
            .query_drop(format!("SELECT * FROM {}.settings", my.state_schema))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_rotated_master_password_and_duplicate_shuffled_deliveries() {
    let (env, mut my) = envs().await;
    let app = env.app_from(&mysql_only(&env, &my)).await;
    let [ann, ben] = ["ann", "ben"].map(|n| User::new(&format!("00u{n}0myrot"), &env.login(n)));
    let deliveries = [
        (
            "d1",
            vec![
                event(ADD, Some(&ann), Some(READERS), 1, "e1"),
                event(ADD, Some(&ben), Some(WRITERS), 1, "e2"),
            ],
        ),
        ("d2", vec![event(ADD, Some(&ann), Some(WRITERS), 2, "e3")]),
        (
            "d3",
            vec![event(REMOVE, Some(&ann), Some(READERS), 3, "e4")],
        ),
        (
            "d4",
            vec![event("user.lifecycle.suspend", Some(&ben), None, 4, "e5")],
        ),
    ];
    // Newest first, then everything again.
    for (id, events) in deliveries.iter().rev().chain(deliveries.iter()) {
        send(&app, id, events.clone()).await;
    }
    let own = |u: &User| format!("ors_{}", u.id);
    assert_eq!(
        my.roles_of(&own(&ann), "").await,
        set(&[&my.readwrite_role])
    );
    assert!(!my.account(&env.login("ann")).await.unwrap().0);
    // Suspended before any add was seen (newest first): never given an account at all.
    assert!(my.account(&env.login("ben")).await.is_none_or(|a| a.0));
    assert!(my.roles_of(&own(&ben), "").await.is_empty());

    // RDS rotates the master password; the kept connection is dropped (a failover).
    my.rotate_master_password(&env.sm, "rotated-my-pw").await;
    let mut root = my.root().await;
    let ids: Vec<u64> = root
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
            (&my.master,),
        )
        .await
        .unwrap();
    for id in ids {
        let _ = root.query_drop(format!("KILL CONNECTION {id}")).await;
    }
    let s = send(
        &app,
        "d5",
        vec![event("user.lifecycle.unsuspend", Some(&ben), None, 5, "e6")],
    )
    .await;
    assert_eq!(s["queued"], false, "re-read the secret and logged in: {s}");
    assert!(!my.account(&env.login("ben")).await.unwrap().0);
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_gets_the_delivery_through_the_queue() {
    let (env, my) = envs().await;
    let queue = okta_rds_sync_tests::create_queue(&format!("{}-my-retry", env.prefix)).await;
    let good = mysql_only(&env, &my).replace(
        "[hook]\n",
        &format!("[hook]\nretry_queue_url = \"{queue}\"\n"),
    );
    // The server is unreachable: nothing listens on its port (a failover, a closed security group).
    let closed = okta_rds_sync_tests::free_port_for_tests();
    let down = good.replace(
        &format!("port = {}", mariadb().port),
        &format!("port = {closed}"),
    );
    let app = env.app_from(&down).await;
    let u = User::new("00uMYDOWN001", &env.login("ann"));
    let response = handle(
        &app,
        post(&delivery(
            "d1",
            vec![event(ADD, Some(&u), Some(READERS), 1, "e1")],
        )),
    )
    .await;
    let body = body_json(&response);
    assert_eq!(
        (response.status(), body["queued"].clone()),
        (StatusCode::OK, Value::Bool(true)),
        "{body}"
    );
    assert!(my.account(&env.login("ann")).await.is_none());
    // Back up: the worker applies what was queued.
    let worker = okta_rds_sync_tests::worker(&good).await;
    let drained = okta_rds_sync_tests::drain(&worker, &queue).await;
    assert_eq!((drained.applied, drained.failed), (1, 0));
    assert!(!my.account(&env.login("ann")).await.unwrap().0);
}

#[tokio::test]
async fn the_reconcile_and_its_dry_run_on_mariadb() {
    use jsonwebtoken::Algorithm;
    let (env, my) = envs().await;
    let toml = mysql_only(&env, &my);
    let app = env.app_from(&toml).await;
    let [ann, ben, cat] =
        ["ann", "ben", "cat"].map(|n| User::new(&format!("00u{n}0myrec"), &env.login(n)));
    send(
        &app,
        "d1",
        vec![
            event(ADD, Some(&ann), Some(READERS), 1, "e1"),
            event(ADD, Some(&ben), Some(READERS), 1, "e2"),
        ],
    )
    .await;
    let mut ben_session = my.open_session_as(&env.login("ben")).await;
    // What Okta says now: ben was deactivated (the hook missed it), cat joined.
    let (private, public) = okta_rds_sync_tests::okta_keypair("ec");
    let okta =
        okta_rds_sync_tests::okta_server::OktaServer::start("0oaMYREC", &public, Algorithm::ES256)
            .await;
    let member = |u: &User, status: &'static str| (u.id.clone(), u.login.clone(), status);
    okta.set_members(
        READERS_GROUP,
        &[
            member(&ann, "ACTIVE"),
            member(&ben, "DEPROVISIONED"),
            member(&cat, "ACTIVE"),
        ],
    )
    .await;
    okta.set_members(WRITERS_GROUP, &[]).await;
    let creds = okta_rds_sync::okta_api::OktaCredentials {
        client_id: "0oaMYREC".into(),
        kid: "k".into(),
        private_key: private,
    };
    let client =
        okta_rds_sync::okta_api::OktaClient::new(&okta.url, &creds, "okta.groups.read").unwrap();
    let config =
        okta_rds_sync::config::Config::parse(&toml, std::path::Path::new("t.toml")).unwrap();
    let engine = okta_rds_sync_tests::worker_engine(&toml).await;
    let listing = okta_rds_sync::reconcile::fetch_listing(&client, &config)
        .await
        .unwrap();

    let audit_before = my.audit().await.len();
    let dry = engine.reconcile(&listing, true).await.remove(0).unwrap();
    assert!(dry.drift());
    assert_eq!(dry.sessions, 1, "ben's live session is reported");
    assert!(
        my.account(&env.login("cat")).await.is_none(),
        "a dry run changes nothing"
    );
    assert!(!my.account(&env.login("ben")).await.unwrap().0);
    assert_eq!(my.audit().await.len(), audit_before);
    ben_session
        .query_drop("SELECT 1")
        .await
        .expect("and kills nothing");

    let real = engine.reconcile(&listing, false).await.remove(0).unwrap();
    assert_eq!(
        real.plan, dry.plan,
        "the dry run planned exactly what the real run did"
    );
    assert_eq!(real.sessions, 1);
    assert!(ben_session.query_drop("SELECT 1").await.is_err());
    assert!(my.account(&env.login("ben")).await.unwrap().0);
    assert!(!my.account(&env.login("cat")).await.unwrap().0);
    let again = engine.reconcile(&listing, false).await.remove(0).unwrap();
    assert!(!again.drift(), "{again:?}");
}

#[tokio::test]
async fn a_postgresql_and_a_mariadb_target_converge_from_the_same_deliveries() {
    let (env, my) = envs().await;
    let toml = format!("{}\n{}", env.config_toml(), my.target_toml("my"));
    let app = env.app_from(&toml).await;
    let u = User::new("00uBOTH00001", &env.login("jane"));
    let s = send(
        &app,
        "d1",
        vec![
            event(ADD, Some(&u), Some(READERS), 1, "e1"),
            event(ADD, Some(&u), Some(WRITERS), 2, "e2"),
        ],
    )
    .await;
    assert_eq!(s["targets"].as_array().unwrap().len(), 2, "{s}");
    let pg_role = env.role(&env.login("jane")).await.unwrap();
    assert!(pg_role.can_login && pg_role.member_of.contains(&env.readwrite_role));
    assert_eq!(
        my.roles_of("ors_00uBOTH00001", "").await,
        set(&[&my.readonly_role, &my.readwrite_role])
    );
    let pg_session = env.open_session_as(&env.login("jane")).await;
    let mut my_session = my.open_session_as(&env.login("jane")).await;
    let s = send(
        &app,
        "d2",
        vec![event("user.lifecycle.deactivate", Some(&u), None, 3, "e3")],
    )
    .await;
    let killed: Vec<i64> = s["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["sessions_terminated"].as_i64().unwrap())
        .collect();
    assert_eq!(killed, [1, 1], "{s}");
    assert!(pg_session.simple_query("SELECT 1").await.is_err());
    assert!(my_session.query_drop("SELECT 1").await.is_err());
    assert!(!env.role(&env.login("jane")).await.unwrap().can_login);
    assert!(my.account(&env.login("jane")).await.unwrap().0);
}
