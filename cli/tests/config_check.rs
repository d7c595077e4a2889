//! `config check`: the functions' own loading and validation, offline; exit 0 with a summary, 1 with the
//! problem (naming the key), 2 for usage errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_okta-rds-sync");

const GOOD: &str = r#"
[hook]
secret_arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:okta-hook-AbCdEf"

[okta]
username = "login"

[[targets]]
name = "app-prod"
engine = "postgres"
host = "app-prod.c1x2y3z4abcd.eu-west-1.rds.amazonaws.com"
database = "app"
secret_arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:rds!db-1234-AbCdEf"

[[targets]]
name = "shop"
engine = "mysql"
host = "shop.c1x2y3z4abcd.eu-west-1.rds.amazonaws.com"
secret_arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:rds!db-5678-AbCdEf"

[[grants]]
okta_group = "00g1abcdEFGHijkl0h8"
target = "app-prod"
roles = ["app_readonly"]
"#;

struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("ors-cli-check-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check(
    dir: &Dir,
    args: &[&std::ffi::OsStr],
    env: Option<&PathBuf>,
) -> (Option<i32>, String, String) {
    let mut c = Command::new(BIN);
    c.args(["config", "check"]).args(args).current_dir(&dir.0);
    c.env_remove("OKTA_RDS_SYNC_CONFIG");
    if let Some(path) = env {
        c.env("OKTA_RDS_SYNC_CONFIG", path);
    }
    let out: Output = c.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_good_config_is_summarized() {
    let dir = Dir::new();
    let path = dir.file("prod.toml", GOOD);
    let (code, stdout, stderr) = check(&dir, &[path.as_os_str()], None);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "ok: {}: 2 targets (app-prod (postgres app-prod.c1x2y3z4abcd.eu-west-1.rds.amazonaws.com:5432), \
             shop (mysql shop.c1x2y3z4abcd.eu-west-1.rds.amazonaws.com:3306)), 1 grant\n",
            path.display()
        )
    );
    // The path from $OKTA_RDS_SYNC_CONFIG, as the functions take it, else ./config.toml.
    let (code, stdout, _) = check(&dir, &[], Some(&path));
    assert_eq!(code, Some(0));
    assert!(
        stdout.starts_with(&format!("ok: {}", path.display())),
        "{stdout}"
    );
    dir.file("config.toml", GOOD);
    let (code, stdout, _) = check(&dir, &[], None);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("ok: config.toml: 2 targets"), "{stdout}");
}

#[test]
fn bad_configs_name_the_problem() {
    let dir = Dir::new();
    let cases = [
        // A typo in a key: parsing rejects unknown keys.
        (
            GOOD.replace("database = \"app\"", "databse = \"app\""),
            "unknown field `databse`",
        ),
        // What types cannot check: validation names the key.
        (
            GOOD.replace("target = \"app-prod\"", "target = \"app-staging\""),
            "grants[0].target",
        ),
        (
            GOOD.replace("name = \"shop\"", "name = \"app-prod\""),
            "targets[1].name",
        ),
        ("not toml at all [".to_owned(), "bad.toml"),
    ];
    for (text, expected) in cases {
        let path = dir.file("bad.toml", &text);
        let (code, stdout, stderr) = check(&dir, &[path.as_os_str()], None);
        assert_eq!(code, Some(1), "{expected}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.starts_with("okta-rds-sync: error: "), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    let missing = dir.0.join("missing.toml");
    let (code, _, stderr) = check(&dir, &[missing.as_os_str()], None);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot read config file"), "{stderr}");
}

#[test]
fn usage_errors_exit_2_and_help_documents_exit_codes() {
    let dir = Dir::new();
    let (code, _, stderr) = check(&dir, &["a".as_ref(), "b".as_ref()], None);
    assert_eq!(code, Some(2), "{stderr}");
    for args in [
        &["--help"][..],
        &["config", "check", "--help"],
        &["connect", "--help"],
        &["token", "--help"],
        &["audit", "--help"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Exit status:") && help.contains("2  usage error"),
            "{args:?}: {help}"
        );
    }
    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
