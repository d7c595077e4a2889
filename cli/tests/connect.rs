//! `connect` for real: the CLI signs a token and runs the real `psql`, which must log in over TLS with the
//! server's chain and host name verified (sslmode=verify-full). RDS's IAM check is the only stand-in: a
//! `psql` wrapper first on PATH makes the token it receives (in PGPASSWORD) the role's password, as the
//! superuser, then execs the real psql with the CLI's arguments. For `--via-ssm`, a stand-in `aws` forwards
//! the local port the CLI asks for to the server, as `aws ssm start-session` does through an instance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use okta_rds_sync_cli::client::find_program;
use okta_rds_sync_tests::{TestEnv, servers};

const BIN: &str = env!("CARGO_BIN_EXE_okta-rds-sync");

/// A scratch directory (config, stand-in programs), deleted when dropped.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("ors-cli-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        Self { dir }
    }

    fn executable(&self, name: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join("bin").join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// PATH with our stand-ins first, then the system's (or only ours and /bin for `isolated`).
    fn path(&self, isolated: bool) -> std::ffi::OsString {
        let mut dirs = vec![self.dir.join("bin")];
        if isolated {
            dirs.push(PathBuf::from("/nonexistent"));
        } else {
            dirs.extend(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            ));
        }
        std::env::join_paths(dirs).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The real psql, found before our wrapper goes on PATH.
fn real_psql() -> PathBuf {
    find_program("psql")
        .or_else(|| {
            let p = Path::new("/usr/lib/postgresql/15/bin/psql");
            p.is_file().then(|| p.to_owned())
        })
        .expect("psql (postgresql-client) is needed for this test")
}

/// Stands in for RDS's IAM check: the token becomes the role's password, set by the superuser over the
/// server's Unix socket; then the real psql runs with exactly the arguments the CLI gave.
fn psql_wrapper(scratch: &Scratch) {
    let socket_dir = servers().dir.join("run");
    scratch.executable(
        "psql",
        &format!(
            r#"#!/bin/sh
set -eu
[ -n "${{PGPASSWORD:-}}" ] || {{ echo "wrapper: no PGPASSWORD" >&2; exit 97; }}
case "$*" in *"$PGPASSWORD"*) echo "wrapper: the token is on the command line" >&2; exit 98;; esac
echo "ALTER ROLE :\"role\" PASSWORD :'token';" | env -u PGPASSWORD '{real}' -X -q -v ON_ERROR_STOP=1 \
  -v role="$FAKE_RDS_ROLE" -v token="$PGPASSWORD" -h '{socket}' -p {port} -U postgres -d postgres -f -
exec '{real}' -X "$@"
"#,
            real = real_psql().display(),
            socket = socket_dir.display(),
            port = servers().pg_port,
        ),
    );
}

/// Stands in for `aws ssm start-session … AWS-StartPortForwardingSessionToRemoteHost`: checks the
/// arguments, records them, and forwards localPortNumber to 127.0.0.1:portNumber until killed.
fn aws_standin(scratch: &Scratch) {
    scratch.executable(
        "aws",
        &format!(
            r#"#!/usr/bin/env python3
import os, socket, sys, threading
args = sys.argv[1:]
open({log:?}, "w").write("\n".join(args))
assert args[:2] == ["ssm", "start-session"], args
assert args[args.index("--document-name") + 1] == "AWS-StartPortForwardingSessionToRemoteHost", args
params = dict(kv.split("=", 1) for kv in args[args.index("--parameters") + 1].split(","))
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(params["localPortNumber"])))
srv.listen()
def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    client, _ = srv.accept()
    upstream = socket.create_connection(("127.0.0.1", int(params["portNumber"])))
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
"#,
            log = scratch.dir.join("aws-args").display().to_string(),
        ),
    );
    scratch.executable("session-manager-plugin", "#!/bin/sh\nexit 0\n");
}

/// A login role of the test, as okta-rds-sync would have made it (no password: the token becomes one).
async fn login_role(env: &TestEnv, local: &str) -> String {
    let role = env.login(local);
    let q = okta_rds_sync::db::postgres::sql::quote_ident(&role).unwrap();
    env.superuser()
        .await
        .batch_execute(&format!("CREATE ROLE {q} LOGIN"))
        .await
        .unwrap();
    role
}

fn cli(scratch: &Scratch, isolated_path: bool) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("AWS_") || k.starts_with("PG") || k.starts_with("OKTA_RDS_SYNC_") {
            c.env_remove(k);
        }
    }
    c.env("PATH", scratch.path(isolated_path))
        .env("HOME", &scratch.dir)
        .env("AWS_CONFIG_FILE", scratch.dir.join("aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            scratch.dir.join("aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )
        .env("AWS_REGION", "us-east-1");
    c
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const WHO_AND_TLS: &str =
    "SELECT current_user || ' ssl=' || ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

#[tokio::test]
async fn psql_logs_in_with_the_token_over_verify_full() {
    let env = TestEnv::new().await;
    let role = login_role(&env, "jane").await;
    let scratch = Scratch::new("connect");
    psql_wrapper(&scratch);
    let config = scratch.write("config.toml", &env.config_toml());

    let out = cli(&scratch, false)
        .args(["connect", "main", "--config"])
        .arg(&config)
        .args(["--username", &role, "--", "-At", "-c", WHO_AND_TLS])
        .env("FAKE_RDS_ROLE", &role)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), format!("{role} ssl=true"), "{stderr}");

    // $OKTA_RDS_SYNC_USERNAME stands for --username.
    let out = cli(&scratch, false)
        .args(["connect", "main", "--config"])
        .arg(&config)
        .args(["--", "-At", "-c", "SELECT current_user"])
        .env("OKTA_RDS_SYNC_USERNAME", &role)
        .env("FAKE_RDS_ROLE", &role)
        .output()
        .unwrap();
    assert_eq!(text(&out).0.trim(), role, "{}", text(&out).1);

    // A CA that did not sign the server's certificate: psql refuses the server, before any password.
    let out = cli(&scratch, false)
        .args(["connect", "main", "--config"])
        .arg(&config)
        .args(["--username", &role, "--ca-file"])
        .arg(&servers().other_ca_file)
        .args(["--", "-At", "-c", "SELECT 1"])
        .env("FAKE_RDS_ROLE", &role)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
}

#[tokio::test]
async fn the_bundled_rds_cas_are_the_default_and_their_temp_file_is_removed() {
    let env = TestEnv::new().await;
    let role = login_role(&env, "tmp").await;
    let scratch = Scratch::new("tmpdir");
    psql_wrapper(&scratch);
    // No ca_file in the config: the bundled RDS CAs are written to a temp file; they do not trust the test
    // server, so psql must fail on the certificate, and the file must be gone afterwards.
    let toml = env
        .config_toml()
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .collect::<Vec<_>>()
        .join("\n");
    let config = scratch.write("config.toml", &toml);
    let tmp = scratch.dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = cli(&scratch, false)
        .args(["connect", "main", "--config"])
        .arg(&config)
        .args(["--username", &role, "--", "-At", "-c", "SELECT 1"])
        .env("FAKE_RDS_ROLE", &role)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temp files left in {}",
        tmp.display()
    );
}

#[tokio::test]
async fn via_ssm_dials_the_forwarded_port_and_verifies_the_real_name() {
    let env = TestEnv::new().await;
    let role = login_role(&env, "ssm").await;
    let scratch = Scratch::new("ssm");
    psql_wrapper(&scratch);
    aws_standin(&scratch);
    let config = scratch.write("config.toml", &env.config_toml());

    let out = cli(&scratch, false)
        .args(["connect", "main", "--config"])
        .arg(&config)
        .args([
            "--username",
            &role,
            "--via-ssm",
            "i-0123456789abcdef0",
            "--region",
            "eu-west-1",
        ])
        .args(["--", "-At", "-c", WHO_AND_TLS])
        .env("FAKE_RDS_ROLE", &role)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), format!("{role} ssl=true"), "{stderr}");
    let args = std::fs::read_to_string(scratch.dir.join("aws-args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    let local_port = args[7].rsplit_once("localPortNumber=").unwrap().1;
    assert_eq!(
        args,
        [
            "ssm",
            "start-session",
            "--target",
            "i-0123456789abcdef0",
            "--document-name",
            "AWS-StartPortForwardingSessionToRemoteHost",
            "--parameters",
            &format!(
                "host=localhost,portNumber={},localPortNumber={local_port}",
                servers().pg_port
            ),
            "--region",
            "eu-west-1",
        ]
    );
    assert_ne!(local_port, servers().pg_port.to_string());
    // The session is gone with the CLI.
    let port: u16 = local_port.parse().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    // Through the tunnel the server must still prove the target's name: one its certificate does not
    // carry fails verify-full even though the address (127.0.0.1) is in the certificate.
    let wrong = scratch.write(
        "wrong.toml",
        &env.config_toml()
            .replace("host = \"localhost\"", "host = \"db.wrong.example\""),
    );
    let out = cli(&scratch, false)
        .args(["connect", "main", "--config"])
        .arg(&wrong)
        .args([
            "--username",
            &role,
            "--via-ssm",
            "i-0123456789abcdef0",
            "--",
            "-At",
            "-c",
            "SELECT 1",
        ])
        .env("FAKE_RDS_ROLE", &role)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("does not match host name \"db.wrong.example\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn missing_programs_and_users_are_clear_errors() {
    let env = TestEnv::new().await;
    let scratch = Scratch::new("missing");
    let config = scratch.write("config.toml", &env.config_toml());
    let run = |extra: &[&str], isolated: bool| {
        let out = cli(&scratch, isolated)
            .args(["connect", "main", "--config"])
            .arg(&config)
            .args(extra)
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        (out.status.code(), stderr)
    };
    let (code, err) = run(&["--username", "jane"], true);
    assert_eq!(code, Some(1));
    assert!(err.contains("psql not found on PATH"), "{err}");

    let (code, err) = run(&[], false);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--username") && err.contains("OKTA_RDS_SYNC_USERNAME"),
        "{err}"
    );

    psql_wrapper(&scratch);
    let (code, err) = run(
        &["--username", "jane", "--via-ssm", "i-0123456789abcdef0"],
        true,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("needs the AWS CLI (`aws`) on PATH"), "{err}");
    scratch.executable("aws", "#!/bin/sh\nexit 1\n");
    let (code, err) = run(
        &["--username", "jane", "--via-ssm", "i-0123456789abcdef0"],
        true,
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("session-manager-plugin"), "{err}");

    let out = cli(&scratch, false)
        .args(["connect", "nope", "--config"])
        .arg(&config)
        .args(["--username", "jane"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("no target \"nope\" in the config; targets: main")
    );
}

/// Stands in for RDS's IAM check on MySQL: the token (in MYSQL_PWD) becomes the account's password, set by
/// root over the server's socket; then the real client runs with exactly the CLI's arguments.
fn mysql_wrapper(scratch: &Scratch, real: &Path) {
    let socket = servers().dir.join("mariadb/run/my.sock");
    scratch.executable(
        "mysql",
        &format!(
            r#"#!/bin/sh
set -eu
[ "${{1:-}}" = "--version" ] && exec '{real}' --version
[ -n "${{MYSQL_PWD:-}}" ] || {{ echo "wrapper: no MYSQL_PWD" >&2; exit 97; }}
case "$*" in *"$MYSQL_PWD"*) echo "wrapper: the token is on the command line" >&2; exit 98;; esac
echo "ALTER USER '$FAKE_RDS_ROLE'@'%' IDENTIFIED BY '$MYSQL_PWD';" | env -u MYSQL_PWD '{real}' --no-defaults -S '{socket}' -uroot
exec '{real}' --no-defaults "$@"
"#,
            real = real.display(),
            socket = socket.display(),
        ),
    );
}

#[tokio::test]
async fn mysql_logs_in_with_the_token_over_verified_tls() {
    let Some(real) = find_program("mariadb").or_else(|| find_program("mysql")) else {
        panic!("the MariaDB/MySQL client is needed for this test");
    };
    let env = TestEnv::new().await;
    let my = okta_rds_sync_tests::mariadb::MyEnv::new(&env.prefix, &env.sm).await;
    let account = format!("{}_jane", env.prefix);
    {
        use mysql_async::prelude::Queryable;
        let mut root = my.root().await;
        root.query_drop(format!("CREATE USER '{account}'@'%' REQUIRE SSL"))
            .await
            .unwrap();
    }
    let scratch = Scratch::new("mysql");
    mysql_wrapper(&scratch, &real);
    let pg = env.config_toml();
    let toml = format!(
        "{}\n{}",
        &pg[..pg.find("[[targets]]").unwrap()],
        my.target_toml("shop")
    );
    let config = scratch.write("config.toml", &toml);
    let run = |extra: &[&std::ffi::OsStr]| {
        cli(&scratch, false)
            .args(["connect", "shop", "--config"])
            .arg(&config)
            .args(["--username", &account])
            .args(extra)
            .args([
                "--",
                "-N",
                "-B",
                "-e",
                "SELECT CURRENT_USER(); SHOW SESSION STATUS LIKE 'Ssl_version'",
            ])
            .env("FAKE_RDS_ROLE", &account)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("{account}@%"), "{stdout}");
    assert!(lines[1].starts_with("Ssl_version\tTLSv1."), "{stdout}");

    // A CA that did not sign the server's certificate: the client refuses the server.
    let out = run(&["--ca-file".as_ref(), servers().other_ca_file.as_os_str()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");

    // A name the certificate does not carry: the client refuses it. Needs a second name for 127.0.0.1;
    // this machine's own host name usually is one (/etc/hosts).
    let other_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && h != "localhost")
        .filter(|h| {
            use std::net::ToSocketAddrs;
            (h.as_str(), 0)
                .to_socket_addrs()
                .is_ok_and(|mut a| a.any(|a| a.ip() == std::net::Ipv4Addr::LOCALHOST))
        });
    match other_name {
        Some(name) => {
            let wrong = scratch.write(
                "wrong.toml",
                &toml.replace("host = \"localhost\"", &format!("host = \"{name}\"")),
            );
            let out = cli(&scratch, false)
                .args(["connect", "shop", "--config"])
                .arg(&wrong)
                .args(["--username", &account, "--", "-e", "SELECT 1"])
                .env("FAKE_RDS_ROLE", &account)
                .output()
                .unwrap();
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(1), "{name}: {stdout}\n{stderr}");
            assert!(
                stderr.contains("certificate") || stderr.contains("SSL"),
                "{stderr}"
            );
        }
        None => eprintln!("host name check not exercised: no second name for 127.0.0.1 here"),
    }

    // Through an SSM forward MariaDB's client could only require TLS without verifying the server, and its
    // --ssl falls back to plaintext: refused before any session or token.
    let out = run(&["--via-ssm".as_ref(), "i-0123456789abcdef0".as_ref()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
}
