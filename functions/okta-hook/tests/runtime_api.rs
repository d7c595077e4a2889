//! The real `okta-hook` binary, polling a Lambda Runtime API emulator, with its config from
//! `OKTA_RDS_SYNC_CONFIG` and AWS pointed at moto through `AWS_ENDPOINT_URL`, as in Lambda.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use okta_rds_sync_tests::okta::sample;
use okta_rds_sync_tests::runtime::RuntimeApi;
use okta_rds_sync_tests::{TestEnv, function_env, servers};

fn scratch(env: &TestEnv) -> PathBuf {
    let dir = servers().dir.join(format!("{}-fn", env.prefix));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test]
async fn the_binary_serves_okta_through_the_runtime_api_and_logs_no_secret() {
    let env = TestEnv::new().await;
    let dir = scratch(&env);
    let config = dir.join("config.toml");
    std::fs::write(&config, env.config_toml()).unwrap();
    let api = RuntimeApi::start().await.unwrap();
    let log = dir.join("function.log");
    let mut child = api
        .spawn_function(
            PathBuf::from(env!("CARGO_BIN_EXE_okta-hook")).as_path(),
            &function_env(&config, "trace"),
            Some(&log),
        )
        .unwrap();

    let answer = api
        .invoke(Bytes::from(sample("challenge")), Duration::from_secs(30))
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body: serde_json::Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["verification"],
        "kCrDs2Rc8WUbS4Y0wD0_kYgJ3ZnVbmSxRb5Yt-x7"
    );

    let delivery = env.localize(&sample("01-group-membership-add"));
    let answer = api
        .invoke(Bytes::from(delivery), Duration::from_secs(30))
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert!(env.role(&env.login("jane.doe")).await.unwrap().can_login);
    let unauthorized = api
        .invoke(Bytes::from(sample("bad-auth")), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&unauthorized).contains("\"statusCode\":401"));
    child.kill().unwrap();
    child.wait().unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        !lines.is_empty() && lines.len() == text.lines().count(),
        "every log line is JSON:\n{text}"
    );
    let audit: Vec<&serde_json::Value> = lines.iter().filter(|l| l["target"] == "audit").collect();
    assert_eq!(audit.len(), 4, "one audit line per change:\n{text}");
    assert_eq!(
        audit[0]["event_uuids"],
        "0a8b1c2d-0000-11f0-a000-000000000001"
    );
    assert_eq!(audit[0]["okta_user"], "00u7jdoeAbCdEf0h8");
    for secret in [
        "okta-rds-sync-demo-secret",
        env.master_password.as_str(),
        "wrong-secret",
    ] {
        assert!(
            !text.contains(secret),
            "a secret reached the logs at TRACE level"
        );
    }
}

#[tokio::test]
async fn a_bad_config_stops_the_function_at_start_with_the_key_named() {
    let env = TestEnv::new().await;
    let dir = scratch(&env);
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        env.config_toml()
            .replace("[[grants]]\nokta_group", "[[grants]]\nokta_grup"),
    )
    .unwrap();
    let api = RuntimeApi::start().await.unwrap();
    let log = dir.join("bad.log");
    let mut child = api
        .spawn_function(
            PathBuf::from(env!("CARGO_BIN_EXE_okta-hook")).as_path(),
            &function_env(&config, "info"),
            Some(&log),
        )
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("okta_grup") && text.contains("line"),
        "{text}"
    );
}
