//! The real `reconcile` binary through a Lambda Runtime API emulator, with its config from
//! `OKTA_RDS_SYNC_CONFIG`, its Okta key from moto's Secrets Manager, and a local Okta emulator: a dry run
//! answers the plan, a drift check fails the invocation, a scheduled (empty) event reconciles.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use jsonwebtoken::Algorithm;
use okta_rds_sync_tests::okta_server::OktaServer;
use okta_rds_sync_tests::runtime::RuntimeApi;
use okta_rds_sync_tests::{
    READERS_GROUP, TestEnv, WRITERS_GROUP, create_secret, function_env, okta_keypair, servers,
};

#[tokio::test]
async fn the_binary_dry_runs_checks_and_reconciles() {
    let env = TestEnv::new().await;
    let (private, public) = okta_keypair("ec");
    let okta = OktaServer::start("0oaBIN", &public, Algorithm::ES256).await;
    okta.set_members(
        READERS_GROUP,
        &[("00uBIN0001".into(), env.login("ann"), "ACTIVE")],
    )
    .await;
    okta.set_members(WRITERS_GROUP, &[]).await;
    let creds = serde_json::json!({ "client_id": "0oaBIN", "kid": "k", "private_key": private })
        .to_string();
    let arn = create_secret(&env.sm, &format!("{}-okta-api", env.prefix), &creds).await;
    let toml = env.config_toml().replace(
        "[okta]\n",
        &format!(
            "[okta]\norg_url = \"{}\"\napi_secret_arn = \"{arn}\"\n",
            okta.url
        ),
    );
    let dir = servers().dir.join(format!("{}-reconcile", env.prefix));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("config.toml");
    std::fs::write(&config, toml).expect("config");

    let api = RuntimeApi::start().await.expect("emulator");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_reconcile"));
    let mut child = api
        .spawn_function(
            &binary,
            &function_env(&config, "info"),
            Some(&dir.join("log")),
        )
        .expect("spawn");
    let invoke = |payload: &'static str| {
        api.invoke(
            Bytes::from_static(payload.as_bytes()),
            Duration::from_secs(60),
        )
    };

    let dry: serde_json::Value =
        serde_json::from_slice(&invoke(r#"{"dry_run":true}"#).await.expect("dry run")).unwrap();
    assert_eq!(
        dry["targets"][0]["plan"].as_array().map(Vec::len),
        Some(1),
        "{dry}"
    );
    assert!(env.role(&env.login("ann")).await.is_none());
    let typo = invoke(r#"{"dry_run":"yes"}"#)
        .await
        .expect_err("a malformed request is refused");
    assert!(typo.contains("invalid request"), "{typo}");
    assert!(
        env.role(&env.login("ann")).await.is_none(),
        "and never runs for real"
    );
    let drift = invoke(r#"{"check":true}"#)
        .await
        .expect_err("drift fails the invocation");
    assert!(drift.contains("drift"), "{drift}");
    // A scheduled EventBridge event has none of our fields: a real run.
    let scheduled = r#"{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","detail":{}}"#;
    invoke(scheduled).await.expect("scheduled run");
    assert!(env.role(&env.login("ann")).await.expect("role").can_login);
    invoke(r#"{"check":true}"#)
        .await
        .expect("no drift after the run");
    child.kill().expect("kill");
    let _ = child.wait();
}
