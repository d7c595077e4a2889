//! The reconcile against a local Okta emulator (real HTTP, private_key_jwt + DPoP) and a real PostgreSQL:
//! a drifted database is brought to Okta's state in one run, a second run changes nothing, a dry run
//! changes nothing and reports exactly what the real run then does, and a hook event newer than the
//! listing is never undone.

use chrono::Utc;
use jsonwebtoken::Algorithm;
use lambda_http::http::StatusCode;
use okta_hook::handle;
use okta_rds_sync::okta_api::{OktaClient, OktaCredentials};
use okta_rds_sync::reconcile::{ReconcileReport, fetch_listing};
use okta_rds_sync_tests::okta::{User, delivery, event, post};
use okta_rds_sync_tests::okta_server::OktaServer;
use okta_rds_sync_tests::{
    READERS_GROUP, TestEnv, WRITERS_GROUP, okta_keypair, servers, set, worker_engine,
};

const ADD: &str = "group.user_membership.add";

/// Seconds from the test events' base time (2026-03-02T14:00:00Z) to now + `ahead`.
fn seconds_until_now_plus(ahead: i64) -> u32 {
    let base = chrono::DateTime::parse_from_rfc3339("2026-03-02T14:00:00Z").unwrap();
    u32::try_from((Utc::now() - base.with_timezone(&Utc)).num_seconds() + ahead).unwrap()
}

async fn reconcile(
    engine: &okta_rds_sync::engine::Engine,
    client: &OktaClient,
    toml: &str,
    dry_run: bool,
) -> ReconcileReport {
    let config =
        okta_rds_sync::config::Config::parse(toml, std::path::Path::new("t.toml")).unwrap();
    let listing = fetch_listing(client, &config).await.unwrap();
    engine
        .reconcile(&listing, dry_run)
        .await
        .into_iter()
        .next()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_drifted_database_is_brought_to_okta_s_state() {
    let env = TestEnv::new().await;
    let toml = env.config_toml();
    let app = env.app_from(&toml).await;
    let writers = (WRITERS_GROUP, "eng-prod-writers");
    let readers = (READERS_GROUP, "eng-prod-access");
    let [ann, ben, cat, dan] =
        ["ann", "ben", "cat", "dan"].map(|n| User::new(&format!("00u{n}0001"), &env.login(n)));

    // What the hook saw: ann in readers, ben in readers + writers, cat in readers. dan's hook was lost.
    let events = vec![
        event(ADD, Some(&ann), Some(readers), 1, "e1"),
        event(ADD, Some(&ben), Some(readers), 2, "e2"),
        event(ADD, Some(&ben), Some(writers), 3, "e3"),
        event(ADD, Some(&cat), Some(readers), 4, "e4"),
    ];
    assert_eq!(
        handle(&app, post(&delivery("d1", events))).await.status(),
        StatusCode::OK
    );
    // Drift: someone revoked ann's app_ro by hand; ben's removal from writers and cat's deactivation were
    // lost, and cat is still logged in.
    let su = env.superuser().await;
    let q = |l: &str| okta_rds_sync::db::postgres::sql::quote_ident(&env.login(l)).unwrap();
    su.batch_execute(&format!("REVOKE {} FROM {}", env.readonly_role, q("ann")))
        .await
        .unwrap();
    let cat_session = env.open_session_as(&env.login("cat")).await;

    // What Okta says now.
    let (private, public) = okta_keypair("ec");
    let okta = OktaServer::start("0oaRECON", &public, Algorithm::ES256).await;
    let member = |u: &User, status: &'static str| (u.id.clone(), u.login.clone(), status);
    okta.set_members(
        READERS_GROUP,
        &[
            member(&ann, "ACTIVE"),
            member(&ben, "ACTIVE"),
            member(&cat, "DEPROVISIONED"),
            member(&dan, "ACTIVE"),
        ],
    )
    .await;
    okta.set_members(WRITERS_GROUP, &[member(&ann, "ACTIVE")])
        .await;
    let creds = OktaCredentials {
        client_id: "0oaRECON".into(),
        kid: "k1".into(),
        private_key: private,
    };
    let client = OktaClient::new(&okta.url, &creds, "okta.groups.read okta.users.read").unwrap();
    let engine = worker_engine(&toml).await;

    let logins = ["ann", "ben", "cat", "dan"];
    let before = env.access(&logins).await;
    let audit_before = env.audit().await.len();
    let dry = reconcile(&engine, &client, &toml, true).await;
    assert_eq!(
        env.access(&logins).await,
        before,
        "a dry run changes nothing"
    );
    assert_eq!(
        env.audit().await.len(),
        audit_before,
        "a dry run writes no audit"
    );
    assert!(dry.drift());
    assert_eq!(dry.sessions, 1, "the dry run reports cat's live session");
    cat_session
        .simple_query("SELECT 1")
        .await
        .expect("dry run kills nothing");

    let real = reconcile(&engine, &client, &toml, false).await;
    assert_eq!(
        real.plan, dry.plan,
        "the dry run reported exactly what the real run did"
    );
    assert_eq!((real.changes, real.sessions), (dry.changes, 1));
    let (ro, rw, m) = (
        env.readonly_role.as_str(),
        env.readwrite_role.as_str(),
        env.marker_role.as_str(),
    );
    assert_eq!(
        env.role(&env.login("ann")).await.unwrap().member_of,
        set(&[m, "rds_iam", ro, rw]),
        "missing grants restored"
    );
    assert_eq!(
        env.role(&env.login("ben")).await.unwrap().member_of,
        set(&[m, "rds_iam", ro]),
        "extra grant revoked"
    );
    let cat_role = env.role(&env.login("cat")).await.unwrap();
    assert!(
        !cat_role.can_login && cat_role.member_of == set(&[m]),
        "deactivated user offboarded"
    );
    assert!(
        cat_session.simple_query("SELECT 1").await.is_err(),
        "and their session killed"
    );
    assert!(
        env.role(&env.login("dan")).await.unwrap().can_login,
        "the user whose hook was lost is onboarded"
    );
    assert!(
        env.audit().await.iter().any(
            |a| a.actor == "okta-rds-sync reconcile" && a.event_uuids.starts_with("reconcile-")
        )
    );

    let again = reconcile(&engine, &client, &toml, false).await;
    assert_eq!(
        (again.changes, again.sessions, again.plan.len()),
        (0, 0, 0),
        "{again:?}"
    );
    assert!(!again.drift());

    // A hook event newer than the next listing (ann leaves writers 90 s from now, within the allowed clock
    // skew) is not undone by a reconcile whose listing, made before Okta reflects it, still shows her there.
    let later = seconds_until_now_plus(90);
    let leave = event(
        "group.user_membership.remove",
        Some(&ann),
        Some(writers),
        later,
        "future",
    );
    assert_eq!(
        handle(&app, post(&delivery("d2", vec![leave])))
            .await
            .status(),
        StatusCode::OK
    );
    assert!(
        !env.role(&env.login("ann"))
            .await
            .unwrap()
            .member_of
            .contains(rw)
    );
    let after_hook = reconcile(&engine, &client, &toml, false).await;
    assert!(
        !env.role(&env.login("ann"))
            .await
            .unwrap()
            .member_of
            .contains(rw),
        "{after_hook:?}"
    );
    assert!(servers().pg_port > 0);
}

#[tokio::test]
async fn the_function_dry_runs_checks_drift_and_reconciles() {
    let env = TestEnv::new().await;
    let (private, public) = okta_keypair("rsa");
    let okta = OktaServer::start("0oaFUNC", &public, Algorithm::RS256).await;
    let [ann, ben] = ["ann", "ben"].map(|n| User::new(&format!("00u{n}0002"), &env.login(n)));
    okta.set_members(
        READERS_GROUP,
        &[
            (ann.id.clone(), ann.login.clone(), "ACTIVE"),
            (ben.id.clone(), ben.login.clone(), "SUSPENDED"),
        ],
    )
    .await;
    okta.set_members(WRITERS_GROUP, &[]).await;
    let creds = serde_json::json!({ "client_id": "0oaFUNC", "kid": "k1", "private_key": private })
        .to_string();
    let arn =
        okta_rds_sync_tests::create_secret(&env.sm, &format!("{}-okta-api", env.prefix), &creds)
            .await;
    let toml = format!(
        "[okta]\norg_url = \"{}\"\napi_secret_arn = \"{arn}\"\n{}",
        okta.url,
        env.config_toml().replace("[okta]", "[okta-unused]")
    );
    let toml = toml.replace(
        "[okta-unused]\nusername = \"login\"\nlowercase = true\n",
        "",
    );
    let config =
        okta_rds_sync::config::Config::parse(&toml, std::path::Path::new("t.toml")).unwrap();
    let app = reconcile::ReconcileApp::new(config, &okta_rds_sync_tests::sdk_config().await)
        .await
        .unwrap();

    let dry = app
        .handle(
            reconcile::ReconcileRequest {
                dry_run: true,
                check: false,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(dry["dry_run"], true);
    let plan = &dry["targets"][0]["plan"];
    assert_eq!(
        plan.as_array().unwrap().len(),
        1,
        "only ann is entitled: {plan}"
    );
    assert!(
        env.role(&env.login("ann")).await.is_none(),
        "dry run changed nothing"
    );
    let drift = app
        .handle(
            reconcile::ReconcileRequest {
                dry_run: false,
                check: true,
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(drift.starts_with("drift"), "{drift}");

    let real = app
        .handle(reconcile::ReconcileRequest::default(), None)
        .await
        .unwrap();
    assert_eq!(real["targets"][0]["changes"], dry["targets"][0]["changes"]);
    assert!(env.role(&env.login("ann")).await.unwrap().can_login);
    assert!(
        env.role(&env.login("ben")).await.is_none(),
        "a suspended member is not entitled"
    );
    let clean = app
        .handle(
            reconcile::ReconcileRequest {
                dry_run: false,
                check: true,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(clean["drift"], false);
}
