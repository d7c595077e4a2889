//! A streaming hot standby of the test cluster: a real read replica for the readers tests. Made with
//! PostgreSQL's low-level base backup API (`pg_backup_start` … copy … `pg_backup_stop`), which works
//! with every server version the tests run on, and started on first use, once per test binary.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::{Servers, as_postgres, free_port, is_root, run, servers, wait_for_port};

#[derive(Debug)]
pub struct Standby {
    pub port: u16,
    pub dir: PathBuf,
}

static STANDBY: OnceLock<Standby> = OnceLock::new();

/// The standby of this test binary's cluster, started on first use.
pub fn standby() -> &'static Standby {
    STANDBY.get_or_init(|| {
        let s = servers();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?
                        .block_on(start(s))
                })
                .join()
                .map_err(|_| "standby setup panicked".to_owned())
                .and_then(|r| r)
        })
        .unwrap_or_else(|e| panic!("cannot start the standby: {e}"))
    })
}

async fn start(s: &Servers) -> Result<Standby, String> {
    let dir = s.dir.join("standby");
    let (data, run_dir) = (dir.join("data"), dir.join("run"));
    let port = free_port();
    let su = s.superuser("postgres").await;
    // A non-exclusive backup belongs to the session that started it.
    let (start_fn, stop_fn) = if s.pg_major >= 15 {
        (
            "pg_catalog.pg_backup_start('standby', true)",
            "pg_catalog.pg_backup_stop(true)",
        )
    } else {
        (
            "pg_catalog.pg_start_backup('standby', true, false)",
            "pg_catalog.pg_stop_backup(false, true)",
        )
    };
    su.batch_execute(&format!("SELECT {start_fn}"))
        .await
        .map_err(|e| format!("backup start: {e}"))?;
    std::fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;
    if is_root() {
        run(Command::new("chown").args(["-R", "postgres:"]).arg(&dir))?;
    }
    run(as_postgres(std::path::Path::new("cp"))
        .arg("-a")
        .arg(s.dir.join("data"))
        .arg(&data))?;
    let label: String = su
        .query_one(&format!("SELECT labelfile FROM {stop_fn}"), &[])
        .await
        .map_err(|e| format!("backup stop: {e}"))?
        .get(0);
    // What a base backup leaves out: the server's lock files and its WAL (streamed from the primary).
    for file in ["postmaster.pid", "postmaster.opts"] {
        let _ = std::fs::remove_file(data.join(file));
    }
    for entry in std::fs::read_dir(data.join("pg_wal")).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_file() {
            std::fs::remove_file(&path).map_err(|e| e.to_string())?;
        }
    }
    std::fs::write(data.join("backup_label"), label).map_err(|e| e.to_string())?;
    std::fs::write(data.join("standby.signal"), "").map_err(|e| e.to_string())?;
    let auto = data.join("postgresql.auto.conf");
    let mut conf = std::fs::read_to_string(&auto).unwrap_or_default();
    conf.push_str(&format!(
        "primary_conninfo = 'host={} port={} user=postgres application_name=standby'\n\
         port = {port}\nunix_socket_directories = '{}'\nhot_standby = on\n",
        s.dir.join("run").display(),
        s.pg_port,
        run_dir.display()
    ));
    std::fs::write(&auto, conf).map_err(|e| e.to_string())?;
    if is_root() {
        run(Command::new("chown").args(["-R", "postgres:"]).arg(&dir))?;
    }
    let pg_ctl = s.pg_bin.join("pg_ctl");
    run(as_postgres(&pg_ctl)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(run_dir.join("pg.log"))
        .args(["-w", "-t", "60", "start"]))?;
    // The primary's watchdog deletes the directory this standby lives in, so `pg_ctl stop` could find no
    // data directory: the standby's watchdog signals its postmaster by pid (SIGQUIT: immediate shutdown).
    let postmaster = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|pid| {
            pid.lines()
                .next()
                .and_then(|l| l.trim().parse::<u32>().ok())
        })
        .ok_or("the standby wrote no postmaster.pid")?;
    Command::new("sh")
        .args([
            "-c",
            &format!(
                "while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill -QUIT {postmaster}",
                parent = std::process::id(),
            ),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("standby watchdog: {e}"))?;
    wait_for_port(port, "the standby")?;
    let standby = Standby { port, dir };
    standby.caught_up().await;
    Ok(standby)
}

impl Standby {
    /// A superuser connection to `database` on the standby.
    pub async fn superuser(&self, database: &str) -> Client {
        servers()
            .connect_to(self.port, database, "postgres", crate::SUPERUSER_PASSWORD)
            .await
            .expect("standby superuser connection")
    }

    /// Wait until the standby has replayed everything the primary has written so far.
    pub async fn caught_up(&self) {
        let primary = servers().superuser("postgres").await;
        // The test cluster commits asynchronously: one flushed commit flushes everything before it.
        primary
            .batch_execute("SET synchronous_commit = on; SELECT pg_catalog.txid_current()")
            .await
            .expect("flush");
        let target: String = primary
            .query_one("SELECT pg_catalog.pg_current_wal_flush_lsn()::text", &[])
            .await
            .expect("primary lsn")
            .get(0);
        let standby = self.superuser("postgres").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let replayed: bool = standby
                .query_one(
                    "SELECT COALESCE(pg_catalog.pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                    &[&target],
                )
                .await
                .expect("standby lsn")
                .get(0);
            if replayed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the standby did not replay {target} in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
