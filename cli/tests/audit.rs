//! `audit` against a real PostgreSQL target after real deliveries through the hook: the CLI reads the
//! trail as the master user with the credentials from (moto's) Secrets Manager, like the functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use okta_hook::handle;
use okta_rds_sync_tests::okta::{User, delivery, event, post};
use okta_rds_sync_tests::{READERS_GROUP, TestEnv, servers};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_okta-rds-sync");

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn audit(config: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    let out = c
        .args(["audit", "main", "--config"])
        .arg(config)
        .args(args)
        .env("AWS_ENDPOINT_URL", &servers().moto_url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_trail_of_an_onboarding_and_an_offboarding() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let jane = User::new("00u7jdoeAbCdEf0h8", &env.login("jane"));
    let john = User::new("00u8jsmtAbCdEf0h8", &env.login("john"));
    let readers = (READERS_GROUP, "eng-prod-access");
    for (id, events) in [
        (
            "d1",
            vec![
                event(
                    "group.user_membership.add",
                    Some(&jane),
                    Some(readers),
                    1,
                    "e1",
                ),
                event(
                    "group.user_membership.add",
                    Some(&john),
                    Some(readers),
                    2,
                    "e2",
                ),
            ],
        ),
        (
            "d2",
            vec![event(
                "user.lifecycle.deactivate",
                Some(&jane),
                None,
                3,
                "e3",
            )],
        ),
    ] {
        let response = handle(&app, post(&delivery(id, events))).await;
        assert_eq!(response.status(), 200);
    }
    let expected = env.audit().await;
    assert!(expected.len() >= 6, "{expected:?}");

    let dir = Dir(std::env::temp_dir().join(format!(
        "ors-cli-audit-{}-{}",
        std::process::id(),
        env.prefix
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let config = dir.0.join("config.toml");
    std::fs::write(&config, env.config_toml()).unwrap();

    // JSON lines: every record, oldest first, as the table has them.
    let (code, stdout, stderr) = audit(&config, &["--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let records: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(String, String, String, String)> = records
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("okta_id"), s("action"), s("outcome"), s("detail"))
        })
        .collect();
    let want: Vec<(String, String, String, String)> = expected
        .iter()
        .map(|a| {
            (
                a.okta_id.clone(),
                a.action.clone(),
                a.outcome.clone(),
                a.detail.clone(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        records
            .iter()
            .all(|r| r["target"] == "main" && r["at"].as_str().unwrap().ends_with('Z'))
    );
    let last = records.last().unwrap();
    assert!(last["duration_ms"].as_f64().is_some(), "{last}");
    assert!(last["event_uuids"].as_array().is_some(), "{last}");
    assert!(!stdout.contains(&env.master_password));

    // The table, for a person: one login, as the config names roles from logins.
    let (code, stdout, stderr) = audit(&config, &["--user", &env.login("jane").to_uppercase()]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("TIME (UTC)") && lines[0].contains("ACTION"),
        "{stdout}"
    );
    let janes = expected
        .iter()
        .filter(|a| a.okta_id == "00u7jdoeAbCdEf0h8")
        .count();
    assert_eq!(lines.len(), 1 + janes, "{stdout}");
    assert!(
        lines[1..].iter().all(|l| l.contains("00u7jdoeAbCdEf0h8")),
        "{stdout}"
    );
    assert!(stdout.contains(&env.login("jane")));
    assert!(!stdout.contains("00u8jsmtAbCdEf0h8"), "{stdout}");
    // By Okta id too.
    let (_, by_id, _) = audit(&config, &["--user", "00u7jdoeAbCdEf0h8"]);
    assert_eq!(by_id, stdout);

    // --limit keeps the newest; --since filters by time.
    let (_, stdout, _) = audit(&config, &["--json", "--limit", "2"]);
    let newest: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(newest, records[records.len() - 2..]);
    let (_, stdout, _) = audit(&config, &["--json", "--since", "1h"]);
    assert_eq!(stdout.lines().count(), records.len());
    let (code, stdout, _) = audit(&config, &["--since", "2099-01-01T00:00:00Z"]);
    assert_eq!((code, stdout.as_str()), (Some(0), "no audit records\n"));
    let (code, _, stderr) = audit(&config, &["--since", "yesterday"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--since \"yesterday\""), "{stderr}");
}

#[tokio::test]
async fn an_unreadable_secret_is_a_clear_failure() {
    let env = TestEnv::new().await;
    let dir = Dir(std::env::temp_dir().join(format!(
        "ors-cli-audit-{}-{}",
        std::process::id(),
        env.prefix
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let config = dir.0.join("config.toml");
    std::fs::write(
        &config,
        env.config_toml().replace(
            &env.master_secret_arn,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf",
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = audit(&config, &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("target main") && stderr.contains("nope-AbCdEf"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_trail_of_a_mysql_target() {
    let env = TestEnv::new().await;
    let my = okta_rds_sync_tests::mariadb::MyEnv::new(&env.prefix, &env.sm).await;
    let pg = env.config_toml();
    let toml = format!(
        "{}\n{}",
        &pg[..pg.find("[[targets]]").unwrap()],
        my.target_toml("main")
    );
    let app = env.app_from(&toml).await;
    let jane = User::new("00u7jdoeAbCdEf0h8", &env.login("jane"));
    let readers = (READERS_GROUP, "eng-prod-access");
    for (id, events) in [
        (
            "d1",
            vec![event(
                "group.user_membership.add",
                Some(&jane),
                Some(readers),
                1,
                "e1",
            )],
        ),
        (
            "d2",
            vec![event("user.lifecycle.suspend", Some(&jane), None, 2, "e2")],
        ),
    ] {
        let response = handle(&app, post(&delivery(id, events))).await;
        assert_eq!(response.status(), 200);
    }
    let expected = my.audit().await;
    assert!(expected.len() >= 4, "{expected:?}");

    let dir = Dir(std::env::temp_dir().join(format!(
        "ors-cli-audit-{}-{}",
        std::process::id(),
        env.prefix
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let config = dir.0.join("config.toml");
    std::fs::write(&config, &toml).unwrap();
    let (code, stdout, stderr) = audit(
        &config,
        &["--json", "--user", &env.login("jane"), "--since", "10m"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let records: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(String, String, String, String)> = records
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            (s("okta_id"), s("action"), s("outcome"), s("detail"))
        })
        .collect();
    assert_eq!(got, expected);
    assert!(
        records
            .iter()
            .any(|r| r["event_uuids"] == serde_json::json!(["e2"])),
        "{stdout}"
    );
    // Stored in UTC: the records are from the last minutes.
    let at = chrono::DateTime::parse_from_rfc3339(records[0]["at"].as_str().unwrap()).unwrap();
    let age = chrono::Utc::now().signed_duration_since(at);
    assert!(age.num_seconds().abs() < 300, "{at}");

    let (code, stdout, _) = audit(&config, &["--limit", "1"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(
        stdout
            .lines()
            .nth(1)
            .unwrap()
            .contains(&expected.last().unwrap().1),
        "{stdout}"
    );
}
