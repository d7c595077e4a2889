//! Test harness: real servers, started once per test binary, shared by its tests in isolation.
//!
//! - PostgreSQL: a throwaway cluster from the machine's binaries (run as `postgres` when we are root),
//!   TLS only (`hostnossl … reject`), SCRAM passwords, its own CA; an `rds_iam` role stands in for RDS's.
//! - Secrets Manager: moto's server over HTTP (`moto_server`, from `.venv/bin`, `$MOTO_SERVER` or `PATH`).
//!
//! A watchdog shell process stops both servers and deletes their files once the test process is gone.
//! Each [`TestEnv`] gets its own master user (non-superuser, CREATEROLE, `pg_signal_backend`, like RDS's),
//! database, mapped roles, marker role, Okta logins and secrets, all prefixed `t<N>`, so tests run in
//! parallel on one cluster (roles are cluster-wide) without sharing a name.

mod http;
pub mod mariadb;
pub mod okta;
pub mod okta_server;
pub mod proxy;
pub mod runtime;
pub mod standby;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::Credentials;
use okta_hook::HookApp;
use okta_rds_sync::config::Config;
use tokio_postgres::Client;
use tokio_postgres::config::SslMode;

/// The hook secret of the samples in `events/` (and of `make demo`).
pub const DEMO_SECRET: &str = "Bearer okta-rds-sync-demo-secret";
pub(crate) const SUPERUSER_PASSWORD: &str = "superuser-test-password";
/// Group ids used by `events/`.
pub const READERS_GROUP: &str = "00g1abcdEFGHijkl0h8";
pub const WRITERS_GROUP: &str = "00g2wrtrsQRSTuvw0h8";

#[derive(Debug)]
pub struct Servers {
    pub pg_port: u16,
    pub ca_file: PathBuf,
    /// A CA that did not sign the server certificate (for negative TLS tests).
    pub other_ca_file: PathBuf,
    pub moto_url: String,
    pub dir: PathBuf,
    /// The server's major version (14, 15, 17, …): `PG_BIN` selects the binaries.
    pub pg_major: u32,
    pub(crate) pg_bin: PathBuf,
}

static SERVERS: OnceLock<Servers> = OnceLock::new();
static NEXT_ENV: AtomicU32 = AtomicU32::new(1);

/// The servers of this test binary, started on first use.
pub fn servers() -> &'static Servers {
    SERVERS.get_or_init(|| {
        start_servers().unwrap_or_else(|e| panic!("cannot start test servers: {e}"))
    })
}

/// A port nothing listens on (for unreachable-server tests).
pub fn free_port_for_tests() -> u16 {
    free_port()
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub(crate) fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// A command run as the `postgres` user when we are root (initdb refuses root), else as ourselves.
pub(crate) fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn pg_bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").is_file() {
            return Err(format!(
                "PG_BIN={}: no initdb there (give an absolute path; `make setup` installs .pg/<major>/bin)",
                dir.display()
            ));
        }
        return Ok(dir);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("PostgreSQL server binaries not found in /usr/lib/postgresql ({e}); set PG_BIN")
        })?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    dirs.pop()
        .ok_or_else(|| "no PostgreSQL server in /usr/lib/postgresql; set PG_BIN".into())
}

fn moto_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    if venv.is_file() {
        return Ok(venv);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
        .ok_or_else(|| "moto_server not found: run `make setup` (or set MOTO_SERVER)".into())
}

fn make_certs(dir: &Path) -> Result<(), String> {
    let ossl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, cn) in [("ca", "okta-rds-sync test CA"), ("other", "unrelated CA")] {
        let subj = format!("/CN={cn}");
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-days", "2", "-subj", &subj, "-keyout", &key, "-out", &crt]);
        args.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        ossl(&args)?;
    }
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    ossl(&args)?;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    ossl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ])
}

pub(crate) fn wait_for_port(port: u16, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not start on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn start_servers() -> Result<Servers, String> {
    let pg_bin = pg_bin_dir()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("okta-rds-sync-test-{}-{nanos}", std::process::id()));
    let (data, run_dir, certs) = (dir.join("data"), dir.join("run"), dir.join("certs"));
    for d in [&dir, &run_dir, &certs] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    make_certs(&certs)?;
    std::fs::write(dir.join("pwfile"), SUPERUSER_PASSWORD).map_err(|e| e.to_string())?;
    if is_root() {
        run(Command::new("chown").args(["-R", "postgres:"]).arg(&dir))?;
    }
    run(Command::new("chmod")
        .args(["600"])
        .arg(certs.join("server.key")))?;
    run(as_postgres(&pg_bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", dir.join("pwfile").display())))?;
    let port = free_port();
    let conf = format!(
        "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nssl = on\n\
         ssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
         max_connections = 300\nshared_buffers = 32MB\nwal_keep_size = '256MB'\npassword_encryption = 'scram-sha-256'\n",
        run_dir.display(),
        certs.join("server.crt").display(),
        certs.join("server.key").display()
    );
    let append = |file: &str, text: &str, replace: bool| -> Result<(), String> {
        let path = data.join(file);
        let old = if replace {
            String::new()
        } else {
            std::fs::read_to_string(&path).map_err(|e| e.to_string())?
        };
        std::fs::write(&path, old + text).map_err(|e| e.to_string())
    };
    append("postgresql.conf", &conf, false)?;
    append(
        "pg_hba.conf",
        "local all all trust\nlocal replication all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n\
         hostnossl all all 127.0.0.1/32 reject\n",
        true,
    )?;
    run(as_postgres(&pg_bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(run_dir.join("pg.log"))
        .args(["-w", "-t", "60", "start"]))?;

    let moto_port = free_port();
    let moto = Command::new(moto_binary()?)
        .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("moto_server: {e}"))?;
    let stop_pg = if is_root() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let watchdog = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; {stop_pg}'{pg_ctl}' -D '{data}' -m immediate stop; \
         kill {moto} 2>/dev/null; rm -rf '{dir}'",
        parent = std::process::id(),
        pg_ctl = pg_bin.join("pg_ctl").display(),
        data = data.display(),
        moto = moto.id(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("watchdog: {e}"))?;
    wait_for_port(moto_port, "moto_server")?;

    let mut servers = Servers {
        pg_port: port,
        ca_file: certs.join("ca.crt"),
        other_ca_file: certs.join("other.crt"),
        moto_url: format!("http://127.0.0.1:{moto_port}"),
        pg_major: 0,
        dir,
        pg_bin,
    };
    // The server's major version, and a cluster-wide stand-in for RDS's rds_iam role.
    servers.pg_major = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(async {
                    let su = servers.superuser("postgres").await;
                    su.batch_execute("CREATE ROLE rds_iam NOLOGIN")
                        .await
                        .map_err(|e| e.to_string())?;
                    let version: i32 = su
                        .query_one("SELECT current_setting('server_version_num')::int", &[])
                        .await
                        .map_err(|e| e.to_string())?
                        .get(0);
                    u32::try_from(version / 10000).map_err(|e| e.to_string())
                })
        })
        .join()
        .map_err(|_| "setup panicked".to_owned())?
    })?;
    Ok(servers)
}

impl Servers {
    /// A superuser connection to `database`, over TLS.
    pub async fn superuser(&self, database: &str) -> Client {
        self.connect(database, "postgres", SUPERUSER_PASSWORD)
            .await
            .expect("superuser connection")
    }

    /// A password login over TLS (verify-full against the test CA).
    pub async fn connect(
        &self,
        database: &str,
        user: &str,
        password: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        self.connect_to(self.pg_port, database, user, password)
            .await
    }

    /// A password login over TLS to the server on `port` (the primary, or its standby).
    pub async fn connect_to(
        &self,
        port: u16,
        database: &str,
        user: &str,
        password: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let tls = okta_rds_sync::tls::client_config(Some(&self.ca_file)).expect("test CA");
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("localhost")
            .port(port)
            .dbname(database)
            .user(user)
            .password(password)
            .ssl_mode(SslMode::Require);
        let (client, conn) = cfg
            .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Stop (fast) or start the PostgreSQL server, for outage tests.
    pub fn pg_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let mut cmd = as_postgres(&self.pg_bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(self.dir.join("run/pg.log"))
            .args(["-w", "-m", "fast", action]);
        run(&mut cmd).unwrap_or_else(|e| panic!("pg_ctl {action}: {e}"));
    }
}

/// The environment of the function binary in local runs: its config file, AWS pointed at moto (dummy
/// credentials), JSON logs at `log_level`.
pub fn function_env(config: &Path, log_level: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OKTA_RDS_SYNC_CONFIG", config.display().to_string()),
        ("AWS_ENDPOINT_URL", servers().moto_url.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_LEVEL", log_level.into()),
    ]
}

/// The okta-hook binary to run: the first command-line argument, or `target/<profile>/okta-hook`.
pub fn function_binary(profile: &str) -> Result<PathBuf, String> {
    let binary = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target")
                .join(profile)
                .join("okta-hook")
        });
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "{} not found: build it first (make demo / make bench do)",
            binary.display()
        ))
    }
}

/// AWS SDK configuration pointing at moto.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&servers().moto_url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "static"))
        .load()
        .await
}

/// One test's isolated slice of the servers.
#[derive(Debug)]
pub struct TestEnv {
    /// `t<N>`: prefix of every name this test creates.
    pub prefix: String,
    pub database: String,
    pub master: String,
    pub master_password: String,
    pub hook_secret_arn: String,
    pub master_secret_arn: String,
    pub readonly_role: String,
    pub readwrite_role: String,
    pub marker_role: String,
    pub sm: aws_sdk_secretsmanager::Client,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::named(&format!("t{}", NEXT_ENV.fetch_add(1, Ordering::SeqCst))).await
    }

    /// An env whose names all start with `prefix` (unique per cluster).
    pub async fn named(prefix: &str) -> Self {
        let servers = servers();
        let prefix = prefix.to_owned();
        let database = format!("{prefix}_db");
        let master = format!("{prefix}_master");
        let master_password = format!("{prefix}-master-pw-'\"x");
        let su = servers.superuser("postgres").await;
        su.batch_execute(&format!(
            "CREATE ROLE {master} LOGIN CREATEROLE PASSWORD '{pw}';
             GRANT pg_signal_backend TO {master};
             CREATE ROLE {prefix}_app_ro NOLOGIN;
             CREATE ROLE {prefix}_app_rw NOLOGIN;",
            pw = master_password.replace('\'', "''"),
        ))
        .await
        .expect("create test roles");
        if servers.pg_major >= 16 {
            // PostgreSQL 16+: a CREATEROLE role grants only roles it administers. As on RDS, the master
            // may grant rds_iam and the mapped roles without having their privileges.
            su.batch_execute(&format!(
                "GRANT rds_iam, {prefix}_app_ro, {prefix}_app_rw TO {master}
                 WITH ADMIN OPTION, INHERIT FALSE, SET FALSE"
            ))
            .await
            .expect("let the master grant the mapped roles");
        }
        su.batch_execute(&format!("CREATE DATABASE {database} OWNER {master}"))
            .await
            .expect("create database");
        let sm = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
        let hook_secret_arn = create_secret(&sm, &format!("{prefix}-okta-hook"), DEMO_SECRET).await;
        let master_json = serde_json::json!({ "username": master, "password": master_password, "engine": "postgres" });
        let master_secret_arn =
            create_secret(&sm, &format!("{prefix}-master"), &master_json.to_string()).await;
        Self {
            readonly_role: format!("{prefix}_app_ro"),
            readwrite_role: format!("{prefix}_app_rw"),
            marker_role: format!("{prefix}_managed"),
            prefix,
            database,
            master,
            master_password,
            hook_secret_arn,
            master_secret_arn,
            sm,
        }
    }

    /// A config with one target (this test's database) and the two groups of `events/` mapped.
    pub fn config_toml(&self) -> String {
        self.config_with("", "")
    }

    /// The same with extra `[hook]` lines and extra `[[targets]]` lines.
    pub fn config_with(&self, hook_extra: &str, target_extra: &str) -> String {
        let s = servers();
        format!(
            r#"
[hook]
secret_arn = "{hook}"
{hook_extra}

[okta]
username = "login"
lowercase = true

[[targets]]
name = "main"
engine = "postgres"
host = "localhost"
port = {port}
database = "{db}"
secret_arn = "{master}"
ca_file = "{ca}"
marker_role = "{marker}"
{target_extra}

[[grants]]
okta_group = "{READERS_GROUP}"
target = "main"
roles = ["{ro}"]

[[grants]]
okta_group = "{WRITERS_GROUP}"
target = "main"
roles = ["{rw}"]
"#,
            hook = self.hook_secret_arn,
            port = s.pg_port,
            db = self.database,
            master = self.master_secret_arn,
            ca = s.ca_file.display(),
            marker = self.marker_role,
            ro = self.readonly_role,
            rw = self.readwrite_role,
        )
    }

    pub async fn app(&self) -> HookApp {
        self.app_from(&self.config_toml()).await
    }

    pub async fn app_from(&self, toml: &str) -> HookApp {
        let config = Config::parse(toml, Path::new("test.toml")).expect("valid test config");
        HookApp::new(&config, &sdk_config().await).expect("app")
    }

    /// A config with the retry queue set.
    pub fn config_with_queue(&self, queue_url: &str) -> String {
        self.config_with(&format!("retry_queue_url = \"{queue_url}\""), "")
    }

    /// The access each login has, with this env's prefix replaced by `T` so that two envs compare. A locked
    /// role with no grants is the same access as no role: whether one was created on the way (and kept, for
    /// its owned objects) depends on the order events arrived in, its access does not.
    pub async fn access(&self, logins: &[&str]) -> Vec<(String, Option<RoleInfo>)> {
        let mut out = Vec::new();
        for l in logins {
            let mut role = self.role(&self.login(l)).await;
            if let Some(r) = &mut role {
                r.member_of = r
                    .member_of
                    .iter()
                    .map(|m| m.replacen(&self.prefix, "T", 1))
                    .collect();
            }
            let no_access = role
                .as_ref()
                .is_some_and(|r| !r.can_login && r.member_of == set(&["T_managed"]));
            out.push(((*l).to_owned(), if no_access { None } else { role }));
        }
        out
    }

    /// Applied changes in the audit trail as `(okta_id, action, detail)`, prefix removed, sorted.
    pub async fn changes(&self) -> Vec<(String, String, String)> {
        let mut v: Vec<(String, String, String)> = self
            .audit()
            .await
            .into_iter()
            .filter(|a| a.outcome == "applied" && a.action != "terminate_sessions")
            .map(|a| (a.okta_id, a.action, a.detail.replace(&self.prefix, "T")))
            .collect();
        v.sort();
        v
    }

    /// The Okta login of a test user: unique to this test.
    pub fn login(&self, local: &str) -> String {
        format!("{local}@{}.acme.com", self.prefix)
    }

    /// Make a sample payload from `events/` this test's own (unique logins).
    pub fn localize(&self, text: &str) -> String {
        text.replace("@acme.com", &format!("@{}.acme.com", self.prefix))
    }

    pub async fn superuser(&self) -> Client {
        servers().superuser(&self.database).await
    }

    /// The role as the catalog has it, if it exists.
    pub async fn role(&self, name: &str) -> Option<RoleInfo> {
        let su = self.superuser().await;
        let row = su
            .query_opt(
                "SELECT r.rolcanlogin, shobj_description(r.oid, 'pg_authid'),
                        ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                              WHERE m.member = r.oid ORDER BY 1)
                 FROM pg_roles r WHERE r.rolname::text = $1::text",
                &[&name],
            )
            .await
            .expect("read role")?;
        let member_of: Vec<String> = row.get(2);
        Some(RoleInfo {
            can_login: row.get(0),
            comment: row.get(1),
            member_of: member_of.into_iter().collect(),
        })
    }

    /// `GRANT role TO member` so that member inherits it (on PostgreSQL 16+ the master is already a
    /// member, without inheritance, of the roles it created or administers).
    pub async fn grant_inherited(&self, role: &str, member: &str) {
        let with = if servers().pg_major >= 16 {
            " WITH INHERIT TRUE"
        } else {
            ""
        };
        self.superuser()
            .await
            .batch_execute(&format!("GRANT {role} TO {member}{with}"))
            .await
            .expect("grant");
    }

    /// On PostgreSQL 16+, let the master grant `role` (a CREATEROLE role grants only roles it administers),
    /// without having its privileges, as RDS's master is set up.
    pub async fn let_master_grant(&self, role: &str) {
        if servers().pg_major >= 16 {
            self.superuser()
                .await
                .batch_execute(&format!(
                    "GRANT {role} TO {} WITH ADMIN OPTION, INHERIT FALSE, SET FALSE",
                    self.master
                ))
                .await
                .expect("grant admin option");
        }
    }

    /// Audit rows: `(okta_id, role, action, outcome, detail)` in insertion order.
    pub async fn audit(&self) -> Vec<AuditRow> {
        let su = self.superuser().await;
        let rows = su
            .query(
                "SELECT coalesce(okta_id, ''), coalesce(role_name, ''), action, outcome, coalesce(detail, ''),
                        coalesce(duration_ms, 0), array_to_string(event_uuids, ','), coalesce(actor, '')
                 FROM okta_rds_sync.audit ORDER BY id",
                &[],
            )
            .await
            .unwrap_or_default();
        rows.iter()
            .map(|r| AuditRow {
                okta_id: r.get(0),
                role: r.get(1),
                action: r.get(2),
                outcome: r.get(3),
                detail: r.get(4),
                duration_ms: r.get(5),
                event_uuids: r.get(6),
                actor: r.get(7),
            })
            .collect()
    }

    /// Give a managed role a password so a test can hold a live session as that person.
    pub async fn open_session_as(&self, role: &str) -> Client {
        let su = self.superuser().await;
        let q = okta_rds_sync::db::postgres::sql::quote_ident(role).expect("ident");
        su.batch_execute(&format!("ALTER ROLE {q} PASSWORD 'session-pw'"))
            .await
            .expect("set password");
        servers()
            .connect(&self.database, role, "session-pw")
            .await
            .expect("session as user")
    }

    /// End every session of the master user (a failover or an idle timeout), so the next use reconnects.
    pub async fn drop_master_connections(&self) {
        self.superuser()
            .await
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                &[&self.master],
            )
            .await
            .expect("terminate master sessions");
    }

    /// Replace the master password in PostgreSQL and in the secret, as an RDS rotation does.
    pub async fn rotate_master_password(&mut self, new_password: &str) {
        let su = self.superuser().await;
        su.batch_execute(&format!(
            "ALTER ROLE {} PASSWORD '{}'",
            self.master,
            new_password.replace('\'', "''")
        ))
        .await
        .expect("rotate password");
        let json = serde_json::json!({ "username": self.master, "password": new_password });
        self.sm
            .put_secret_value()
            .secret_id(&self.master_secret_arn)
            .secret_string(json.to_string())
            .send()
            .await
            .expect("put secret");
        self.master_password = new_password.to_owned();
    }
}

/// A set of role names, for comparing memberships.
pub fn set<S: AsRef<str>>(names: &[S]) -> std::collections::BTreeSet<String> {
    names.iter().map(|n| n.as_ref().to_owned()).collect()
}

/// A fresh key pair from openssl for an Okta service app: (private PKCS#8 PEM, public PEM); `kind` is
/// `"rsa"` or `"ec"` (P-256).
pub fn okta_keypair(kind: &str) -> (String, String) {
    let n = NEXT_ENV.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("okta-keys-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("key dir");
    let key = dir.join("key.pem");
    let args: &[&str] = match kind {
        "rsa" => &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ],
        _ => &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ],
    };
    run(Command::new("openssl").args(args).arg("-out").arg(&key)).expect("openssl genpkey");
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .expect("openssl pkey");
    let private = std::fs::read_to_string(&key).expect("key");
    let _ = std::fs::remove_dir_all(&dir);
    (
        private,
        String::from_utf8_lossy(&public.stdout).into_owned(),
    )
}

/// An SQS client for moto.
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config().await)
}

/// Wait until the messages [`drain`] reported as failed are visible again, as SQS makes them when their
/// visibility timeout ends.
pub async fn wait_for_redelivery() {
    tokio::time::sleep(Duration::from_secs(RETRY_VISIBILITY_SECS as u64 + 1)).await;
}

/// Visibility timeout used by [`drain`]; short so that tests can wait for failed messages to return.
pub const RETRY_VISIBILITY_SECS: i32 = 2;

/// An SQS queue in moto; returns its URL.
pub async fn create_queue(name: &str) -> String {
    let sqs = aws_sdk_sqs::Client::new(&sdk_config().await);
    let out = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue in moto");
    out.queue_url().expect("queue url").to_owned()
}

/// What one pass of [`drain`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub received: usize,
    pub applied: usize,
    pub failed: usize,
}

/// Receive every visible message of the queue from moto (over HTTP, as Lambda's SQS poller does), hand them
/// to the retry worker in batches of up to 10, and delete the ones it did not report as failed.
pub async fn drain(worker: &retry_worker::Worker, queue_url: &str) -> Drained {
    let sqs = aws_sdk_sqs::Client::new(&sdk_config().await);
    let mut drained = Drained::default();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(RETRY_VISIBILITY_SECS)
            .send()
            .await
            .expect("receive from moto");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return drained;
        }
        let records: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                serde_json::json!({
                    "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                    "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:retry", "awsRegion": "us-east-1"
                })
            })
            .collect();
        let event: aws_lambda_events::event::sqs::SqsEvent =
            serde_json::from_value(serde_json::json!({ "Records": records })).expect("SQS event");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let response = worker.handle_batch(event, deadline).await;
        let failed: std::collections::HashSet<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        drained.received += messages.len();
        for m in &messages {
            if failed.contains(m.message_id().unwrap_or_default()) {
                drained.failed += 1;
            } else {
                drained.applied += 1;
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete from moto");
            }
        }
        if !failed.is_empty() {
            // Failed messages stay invisible until their visibility timeout, as in SQS.
            return drained;
        }
    }
}

/// The retry worker for a config.
pub async fn worker(toml: &str) -> retry_worker::Worker {
    let config = Config::parse(toml, Path::new("test.toml")).expect("valid test config");
    let sdk = sdk_config().await;
    let secrets =
        okta_rds_sync::secrets::Secrets::new(&sdk, Duration::from_secs(300)).expect("secrets");
    retry_worker::Worker::new(&config, secrets, &sdk, Duration::from_secs(10)).expect("worker")
}

/// What the hook does before queueing: seal a delivery with the hook secret of the tests.
pub fn sealed(
    delivery_id: &str,
    received_at: chrono::DateTime<chrono::Utc>,
    body: &str,
) -> okta_rds_sync::queue::QueuedDelivery {
    let secret = okta_rds_sync::verify::HookSecret::parse(DEMO_SECRET).expect("secret");
    okta_rds_sync::queue::QueuedDelivery::sealed(
        delivery_id,
        received_at,
        body.as_bytes(),
        &okta_rds_sync::queue::QueueSeal::new(&secret),
    )
}

/// An engine with the retry worker's budget (for the reconcile, which has no Okta waiting on it).
pub async fn worker_engine(toml: &str) -> okta_rds_sync::engine::Engine {
    let config = Config::parse(toml, Path::new("test.toml")).expect("valid test config");
    let sdk = sdk_config().await;
    let secrets =
        okta_rds_sync::secrets::Secrets::new(&sdk, Duration::from_secs(300)).expect("secrets");
    okta_rds_sync::engine::Engine::with_budget(&config, secrets, &sdk, Duration::from_secs(10))
        .expect("engine")
}

pub async fn create_secret(sm: &aws_sdk_secretsmanager::Client, name: &str, value: &str) -> String {
    let out = sm
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create secret in moto");
    out.arn().expect("arn").to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    pub can_login: bool,
    pub comment: Option<String>,
    pub member_of: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub okta_id: String,
    pub role: String,
    pub action: String,
    pub outcome: String,
    pub detail: String,
    pub duration_ms: f64,
    pub event_uuids: String,
    pub actor: String,
}
