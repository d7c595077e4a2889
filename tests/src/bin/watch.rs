//! `make watch`: the local loop with cargo-lambda. Starts the same throwaway PostgreSQL (TLS, SCRAM, an
//! `rds_iam` stand-in, a CREATEROLE master as on RDS) and moto's Secrets Manager as `make demo`, writes the
//! config and the function's environment, then runs `cargo lambda watch` on okta-hook with that
//! environment, so that in a second shell every file in `events/` works with
//! `cargo lambda invoke okta-hook -F events/<file>.json`. Ctrl-C stops everything.
//!
//! Usage: watch [--port N] [--dir DIR] [--no-reload]
//!   --port       where `cargo lambda invoke` sends invocations (default 9000, cargo-lambda's default)
//!   --dir        where config.toml, function.env and watch.json are written (default target/watch)
//!   --no-reload  do not rebuild and restart the function when a source file changes
//!
//! cargo-lambda: `$CARGO_LAMBDA`, else `.venv/bin/cargo-lambda` (`make setup-tools`), else `PATH`.
//! It builds okta-hook with `cargo run -p okta-hook --bin okta-hook` in the workspace's target directory,
//! the same build as `cargo build -p okta-hook` (which `make watch` runs first, so nothing is rebuilt).
//!
//! Teardown: a reaper in a process group of its own waits for this process to end, however it ends
//! (Ctrl-C reaches only the terminal's foreground group, so the reaper survives it), then ends
//! cargo-lambda with SIGTERM (on which it stops the build or function it runs, each in a process group of
//! its own), stops PostgreSQL and deletes its files. cargo-lambda too runs in a group of its own, so that
//! Ctrl-C ends it only through the reaper.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use okta_rds_sync_tests::{TestEnv, function_env, servers};

/// Where cargo-lambda is: `$CARGO_LAMBDA`, `.venv/bin/cargo-lambda`, or the first on `PATH`.
fn cargo_lambda(root: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CARGO_LAMBDA") {
        return Some(PathBuf::from(p));
    }
    let venv = root.join(".venv/bin/cargo-lambda");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("cargo-lambda"))
            .find(|p| p.is_file())
    })
}

struct Args {
    port: u16,
    dir: PathBuf,
    reload: bool,
}

fn args(root: &Path) -> Result<Args, String> {
    let mut a = Args {
        port: 9000,
        dir: root.join("target/watch"),
        reload: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--port" => {
                a.port = it
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or("--port needs a port number")?
            }
            "--dir" => a.dir = it.next().ok_or("--dir needs a directory")?.into(),
            "--no-reload" => a.reload = false,
            "-h" | "--help" => {
                return Err("usage: watch [--port N] [--dir DIR] [--no-reload]".into());
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(a)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root");
    let args = match args(&root) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(cargo_lambda) = cargo_lambda(&root) else {
        eprintln!(
            "cargo-lambda not found: run `make setup-tools` (installs it into .venv), or set CARGO_LAMBDA"
        );
        return ExitCode::FAILURE;
    };
    if std::net::TcpListener::bind(("127.0.0.1", args.port)).is_err() {
        eprintln!(
            "port {} is taken (another `cargo lambda watch`?): stop it, or choose another with --port",
            args.port
        );
        return ExitCode::FAILURE;
    }
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("{}: {e}", args.dir.display());
        return ExitCode::FAILURE;
    }

    println!("Starting a throwaway PostgreSQL (TLS, SCRAM) and moto's Secrets Manager...");
    let s = servers();
    let env = TestEnv::named("watch").await;
    let config = args.dir.join("config.toml");
    let env_file = args.dir.join("function.env");
    let function_vars = function_env(&config, "info");
    let written = std::fs::write(&config, env.config_toml()).and_then(|()| {
        std::fs::write(
            &env_file,
            function_vars
                .iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect::<String>(),
        )
    });
    if let Err(e) = written {
        eprintln!("{}: {e}", args.dir.display());
        return ExitCode::FAILURE;
    }

    let mut watch = Command::new(&cargo_lambda);
    watch
        .args(["lambda", "watch", "--invoke-port"])
        .arg(args.port.to_string())
        .args(["--package", "okta-hook", "--bin", "okta-hook", "--env-file"])
        .arg(&env_file)
        .current_dir(&root)
        .stdin(Stdio::null())
        .process_group(0);
    if !args.reload {
        watch.arg("--ignore-changes");
    }
    // What cargo sets for the process it runs (`cargo run --bin watch`, or a test): build scripts such as
    // ring's declare rerun-if-env-changed on CARGO_MANIFEST_DIR, CARGO_PKG_NAME, OUT_DIR ..., and cargo
    // compares them with its own environment, so passing them on to cargo-lambda's `cargo run` would
    // rebuild ring and everything above it (the AWS SDK, the library, okta-hook), and again on the next
    // plain build.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k == "OUT_DIR"
            || k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_CFG_")
            || k.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&k.as_ref())
        {
            watch.env_remove(&key);
        }
    }
    let mut child = match watch.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", cargo_lambda.display());
            return ExitCode::FAILURE;
        }
    };
    // The reaper: in a process group of its own, so that Ctrl-C (sent to the terminal's foreground group)
    // does not end it before it has cleaned up.
    let data = s.dir.join("data");
    let reaper = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.2; done; \
         kill -TERM {lambda} 2>/dev/null; \
         for i in $(seq 50); do kill -0 {lambda} 2>/dev/null || break; sleep 0.2; done; \
         kill -KILL {lambda} 2>/dev/null; \
         pid=$(head -n1 {pidfile} 2>/dev/null) && kill -QUIT \"$pid\" 2>/dev/null; \
         for i in 1 2 3 4 5 6 7 8 9 10; do [ -e {pidfile} ] || break; sleep 0.5; done; rm -rf {dir}",
        me = std::process::id(),
        lambda = child.id(),
        pidfile = shell_quote(&data.join("postmaster.pid").display().to_string()),
        dir = shell_quote(&s.dir.display().to_string()),
    );
    if let Err(e) = Command::new("sh")
        .args(["-c", &reaper])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
    {
        eprintln!("reaper: {e}");
        let _ = child.kill();
        return ExitCode::FAILURE;
    }

    // cargo-lambda listens once its emulator is up (the function is built on the first invocation).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", args.port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("cargo lambda watch ended: {status}");
            return ExitCode::FAILURE;
        }
        if std::time::Instant::now() > deadline {
            eprintln!(
                "cargo lambda watch is not listening on port {} after 60 s",
                args.port
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let info = serde_json::json!({
        "invoke_port": args.port,
        "cargo_lambda_pid": child.id(),
        "pg_port": s.pg_port,
        "database": env.database,
        "master": env.master,
        "master_password": env.master_password,
        "ca_file": s.ca_file,
        "moto_url": s.moto_url,
        "config": config,
        "servers_dir": s.dir,
    });
    if let Err(e) = std::fs::write(args.dir.join("watch.json"), info.to_string()) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let port_flag = if args.port == 9000 {
        String::new()
    } else {
        format!(" -P {}", args.port)
    };
    println!(
        "  PostgreSQL  localhost:{} (database {}, master {})\n  moto        {}\n  config      {}\n  function    environment in {}\n",
        s.pg_port,
        env.database,
        env.master,
        s.moto_url,
        config.display(),
        env_file.display()
    );
    println!(
        "cargo lambda watch is building and starting okta-hook{}. In a second shell:\n\n  \
         cargo lambda invoke okta-hook{port_flag} -F events/challenge.json\n  \
         cargo lambda invoke okta-hook{port_flag} -F events/01-group-membership-add.json\n  \
         cargo lambda invoke okta-hook{port_flag} -F events/bad-auth.json\n\n\
         (every file in events/; the first invocation waits for the build). Look at the database:\n\n  \
         PGPASSWORD={} psql \"host=localhost port={} dbname={} user={} sslmode=verify-full sslrootcert={}\" \\\n    \
         -c '\\du' -c 'TABLE okta_rds_sync.audit'\n\n\
         Ctrl-C stops the function, PostgreSQL and moto.\n",
        if args.reload {
            " (and rebuilds it when you save a file)"
        } else {
            ""
        },
        shell_quote(&env.master_password),
        s.pg_port,
        env.database,
        env.master,
        s.ca_file.display(),
    );

    match tokio::task::spawn_blocking(move || child.wait()).await {
        Ok(Ok(status)) if status.success() => ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            eprintln!("cargo lambda watch ended: {status}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("cargo lambda watch: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
