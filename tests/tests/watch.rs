//! `make watch` for real: the `watch` binary starts PostgreSQL and moto and runs the real
//! `cargo lambda watch` on okta-hook; `cargo lambda invoke okta-hook -F events/<file>.json` then answers
//! Okta's verification challenge, refuses a wrong secret and applies a delivery to the database. Ending the
//! `watch` process ends cargo-lambda, the function, PostgreSQL and their files.
//!
//! Needs cargo-lambda (`make setup-tools` installs it into .venv; `$CARGO_LAMBDA` overrides): without it the
//! test fails, it does not skip. okta-hook is built by cargo-lambda with `cargo run -p okta-hook`, the same
//! build as `cargo build -p okta-hook`, which `make test` runs first so that nothing is compiled here.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn cargo_lambda() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_LAMBDA") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "CARGO_LAMBDA={}: no such file; unset it to use .venv/bin/cargo-lambda (`make setup-tools`)",
            p.display()
        );
        return p;
    }
    let venv = root().join(".venv/bin/cargo-lambda");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("cargo-lambda"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "cargo-lambda not found (not in $CARGO_LAMBDA, .venv/bin or PATH): run `make setup-tools`, \
                 which installs it into .venv; this test needs the real cargo-lambda"
            )
        })
}

/// The `watch` process; ended (SIGINT, as Ctrl-C would) when dropped, so a failing test cleans up too.
struct Watch {
    child: Child,
}

impl Watch {
    fn interrupt(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.interrupt();
    }
}

fn alive(pid: u64) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cargo lambda invoke okta-hook -F events/<name>.json`: the function's response.
fn invoke(port: u16, name: &str) -> serde_json::Value {
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("120")
        .arg(cargo_lambda())
        .args(["lambda", "invoke", "okta-hook", "--invoke-port"])
        .arg(port.to_string())
        .arg("--data-file")
        .arg(format!("events/{name}.json"))
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .expect("run cargo lambda invoke");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo lambda invoke okta-hook -F events/{name}.json: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "invoke {name}: {:.2} s: {}",
        started.elapsed().as_secs_f64(),
        stdout.trim()
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{name}: {e}: {stdout}"))
}

fn body(response: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cargo_lambda_watch_serves_the_events() {
    let started = Instant::now();
    let cargo_lambda = cargo_lambda();
    let dir = root().join(format!("target/watch-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("watch.log")).unwrap();
    let mut watch = Watch {
        child: Command::new(env!("CARGO_BIN_EXE_watch"))
            .args(["--port", &port.to_string(), "--dir"])
            .arg(&dir)
            .arg("--no-reload")
            .env("CARGO_LAMBDA", &cargo_lambda)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the watch binary"),
    };
    let info_file = dir.join("watch.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !info_file.is_file() {
        if let Ok(Some(status)) = watch.child.try_wait() {
            panic!(
                "watch ended ({status}): {}",
                std::fs::read_to_string(dir.join("watch.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "watch did not start in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&info_file).unwrap()).unwrap();
    eprintln!("servers up after {:.2} s", started.elapsed().as_secs_f64());
    let printed = std::fs::read_to_string(dir.join("watch.log")).unwrap();
    assert!(
        printed.contains(&format!(
            "cargo lambda invoke okta-hook -P {port} -F events/challenge.json"
        )),
        "{printed}"
    );

    // Okta's one-time verification GET (the first invocation waits for cargo-lambda's build).
    let challenge = invoke(port, "challenge");
    assert_eq!(challenge["statusCode"], 200, "{challenge}");
    assert_eq!(
        body(&challenge)["verification"],
        "kCrDs2Rc8WUbS4Y0wD0_kYgJ3ZnVbmSxRb5Yt-x7"
    );

    // A wrong secret: 401, nothing applied.
    let bad = invoke(port, "bad-auth");
    assert_eq!(bad["statusCode"], 401, "{bad}");

    // A delivery: jane joins eng-prod-access, so her login role exists, can log in, and holds the mapped
    // read-only role and rds_iam.
    let add = invoke(port, "01-group-membership-add");
    assert_eq!(add["statusCode"], 200, "{add}");
    assert_eq!(body(&add)["events"], 1, "{add}");
    let ca = PathBuf::from(info["ca_file"].as_str().unwrap());
    let tls = okta_rds_sync::tls::client_config(Some(&ca)).unwrap();
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("localhost")
        .port(info["pg_port"].as_u64().unwrap() as u16)
        .dbname(info["database"].as_str().unwrap())
        .user(info["master"].as_str().unwrap())
        .password(info["master_password"].as_str().unwrap())
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let (db, conn) = cfg
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .await
        .expect("connect to the watch database as its master");
    let conn = tokio::spawn(conn);
    let row = db
        .query_one(
            "SELECT r.rolcanlogin,
                    ARRAY(SELECT g.rolname::text FROM pg_catalog.pg_auth_members m
                          JOIN pg_catalog.pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1)
             FROM pg_catalog.pg_roles r WHERE r.rolname = 'jane.doe@acme.com'",
            &[],
        )
        .await
        .expect("jane's role exists after the delivery");
    let (can_login, member_of): (bool, Vec<String>) = (row.get(0), row.get(1));
    assert!(can_login);
    assert!(member_of.contains(&"rds_iam".to_owned()), "{member_of:?}");
    assert!(
        member_of.contains(&"watch_app_ro".to_owned()),
        "{member_of:?}"
    );
    drop(db);
    let _ = conn.await;

    // Ctrl-C: cargo-lambda, the function, PostgreSQL and the servers' files are gone.
    watch.interrupt();
    let lambda_pid = info["cargo_lambda_pid"].as_u64().unwrap();
    let pg_port = info["pg_port"].as_u64().unwrap() as u16;
    let servers_dir = PathBuf::from(info["servers_dir"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lambda_left = alive(lambda_pid);
        let pg_left = TcpStream::connect(("127.0.0.1", pg_port)).is_ok();
        let invoke_left = TcpStream::connect(("127.0.0.1", port)).is_ok();
        let files_left = servers_dir.exists();
        if !(lambda_left || pg_left || invoke_left || files_left) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left running after the watch ended: cargo-lambda {lambda_left}, PostgreSQL {pg_left}, \
             invoke port {invoke_left}, files {files_left}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "watch test done in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}
