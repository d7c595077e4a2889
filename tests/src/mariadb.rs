//! A throwaway MariaDB for the MySQL-family tests, started once per test binary: TLS only (the same test CA
//! as PostgreSQL's), `auth_pam` loaded so that accounts can be `IDENTIFIED WITH pam AS 'RDS'` (the shape of
//! RDS's `AWSAuthenticationPlugin`), and `mysql.rds_kill` defined as RDS has it (SQL SECURITY DEFINER), for a
//! master without SUPER. Each [`MyEnv`] gets its own master (with the privileges RDS gives its master),
//! mapped roles, data, marker role and state database, all prefixed, so tests run in parallel.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts};

use crate::{free_port, is_root, run, servers, wait_for_port};

#[derive(Debug)]
pub struct MariaDb {
    pub port: u16,
    socket: PathBuf,
}

static MARIADB: OnceLock<MariaDb> = OnceLock::new();

/// The MariaDB server of this test binary, started on first use.
pub fn mariadb() -> &'static MariaDb {
    MARIADB.get_or_init(|| start().unwrap_or_else(|e| panic!("cannot start MariaDB: {e}")))
}

/// The privileges RDS gives its master user on MySQL/MariaDB (no SUPER, no CONNECTION ADMIN).
pub const RDS_MASTER_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, \
     REFERENCES, INDEX, ALTER, SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, \
     BINLOG MONITOR, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, TRIGGER";

fn start() -> Result<MariaDb, String> {
    let pg = servers();
    let dir = pg.dir.join("mariadb");
    let (data, run_dir) = (dir.join("data"), dir.join("run"));
    for d in [&data, &run_dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let user = if is_root() { "root" } else { "" };
    let mut install = Command::new("mariadb-install-db");
    install
        .args([
            "--no-defaults",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .arg(format!("--datadir={}", data.display()));
    if !user.is_empty() {
        install.arg(format!("--user={user}"));
    }
    run(&mut install)?;
    let port = free_port();
    let certs = pg.dir.join("certs");
    let socket = run_dir.join("my.sock");
    let mut server = Command::new("mariadbd");
    server
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--port={port}"))
        .args([
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--skip-log-bin",
        ])
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--pid-file={}", run_dir.join("my.pid").display()))
        .arg(format!("--log-error={}", run_dir.join("err.log").display()))
        .arg(format!("--ssl-ca={}", certs.join("ca.crt").display()))
        .arg(format!("--ssl-cert={}", certs.join("server.crt").display()))
        .arg(format!("--ssl-key={}", certs.join("server.key").display()))
        .args([
            "--require-secure-transport=ON",
            "--plugin-load-add=auth_pam",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-buffer-pool-size=64M",
            "--max-connections=400",
        ]);
    if !user.is_empty() {
        server.arg(format!("--user={user}"));
    }
    let child = server
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("mariadbd: {e}"))?;
    let watchdog = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill -9 {child} 2>/dev/null",
        parent = std::process::id(),
        child = child.id()
    );
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("watchdog: {e}"))?;
    wait_for_port(port, "mariadbd")?;
    let db = MariaDb { port, socket };
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(async {
                    let mut root = db.root().await;
                    root.query_drop(
                        "CREATE PROCEDURE mysql.rds_kill(IN thread BIGINT) SQL SECURITY DEFINER
                         BEGIN KILL CONNECTION thread; END",
                    )
                    .await
                    .map_err(|e| e.to_string())
                })
        })
        .join()
        .map_err(|_| "setup panicked".to_owned())?
    })?;
    Ok(db)
}

impl MariaDb {
    /// A root connection over the socket.
    pub async fn root(&self) -> Conn {
        let opts = OptsBuilder::default()
            .socket(Some(self.socket.display().to_string()))
            .user(Some("root"))
            .prefer_socket(true)
            .init(vec![
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,NO_ENGINE_SUBSTITUTION'",
            ]);
        Conn::new(opts).await.expect("root connection")
    }

    /// A password login over TLS (verify-full against the test CA).
    pub async fn connect(&self, user: &str, password: &str) -> Result<Conn, mysql_async::Error> {
        let ca = std::fs::read(&servers().ca_file).expect("test CA");
        let opts = OptsBuilder::default()
            .ip_or_hostname("localhost")
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false)
            .ssl_opts(
                SslOpts::default()
                    .with_root_certs(vec![ca.into()])
                    .with_disable_built_in_roots(true),
            );
        Conn::new(opts).await
    }
}

/// One test's part of the MariaDB server.
#[derive(Debug)]
pub struct MyEnv {
    pub prefix: String,
    pub master: String,
    pub master_password: String,
    pub master_secret_arn: String,
    pub readonly_role: String,
    pub readwrite_role: String,
    pub marker_role: String,
    pub state_schema: String,
    /// A database with a table only the read-only role may read.
    pub data: String,
}

impl MyEnv {
    /// Set up under `prefix` (unique per test), with the master secret in moto.
    pub async fn new(prefix: &str, sm: &aws_sdk_secretsmanager::Client) -> Self {
        let db = mariadb();
        let master = format!("{prefix}_master");
        let master_password = format!("{prefix}-my-pw-'\"x");
        let mut root = db.root().await;
        root.query_drop(format!(
            "CREATE USER '{master}'@'%' IDENTIFIED BY '{pw}' REQUIRE SSL;
             GRANT {RDS_MASTER_PRIVILEGES} ON *.* TO '{master}'@'%' WITH GRANT OPTION;
             GRANT EXECUTE ON PROCEDURE mysql.rds_kill TO '{master}'@'%';",
            pw = master_password.replace('\'', "''"),
        ))
        .await
        .expect("create master");
        let mut m = db
            .connect(&master, &master_password)
            .await
            .expect("master login");
        let data = format!("{prefix}_data");
        m.query_drop(format!(
            "CREATE ROLE {prefix}_app_ro; CREATE ROLE {prefix}_app_rw;
             CREATE DATABASE {data}; CREATE TABLE {data}.secret (x INT); INSERT INTO {data}.secret VALUES (42);
             GRANT SELECT ON {data}.secret TO {prefix}_app_ro; GRANT INSERT ON {data}.secret TO {prefix}_app_rw;"
        ))
        .await
        .expect("create roles and data");
        let secret = serde_json::json!({ "username": master, "password": master_password, "engine": "mariadb" });
        let master_secret_arn =
            crate::create_secret(sm, &format!("{prefix}-my-master"), &secret.to_string()).await;
        Self {
            readonly_role: format!("{prefix}_app_ro"),
            readwrite_role: format!("{prefix}_app_rw"),
            marker_role: format!("{prefix}_my_managed"),
            state_schema: format!("{prefix}_state"),
            prefix: prefix.to_owned(),
            master,
            master_password,
            master_secret_arn,
            data,
        }
    }

    /// A `[[targets]]` entry named `name` for this server, and grants of the two groups of `events/`.
    pub fn target_toml(&self, name: &str) -> String {
        format!(
            r#"
[[targets]]
name = "{name}"
engine = "mysql"
host = "localhost"
port = {port}
secret_arn = "{secret}"
ca_file = "{ca}"
marker_role = "{marker}"
state_schema = "{state}"
iam_plugin = "pam"

[[grants]]
okta_group = "{readers}"
target = "{name}"
roles = ["{ro}"]

[[grants]]
okta_group = "{writers}"
target = "{name}"
roles = ["{rw}"]
"#,
            port = mariadb().port,
            secret = self.master_secret_arn,
            ca = servers().ca_file.display(),
            marker = self.marker_role,
            state = self.state_schema,
            readers = crate::READERS_GROUP,
            writers = crate::WRITERS_GROUP,
            ro = self.readonly_role,
            rw = self.readwrite_role,
        )
    }

    pub async fn root(&self) -> Conn {
        mariadb().root().await
    }

    /// The account `'<name>'@'%'` as the server has it: `(locked, plugin, auth string, default role)`.
    pub async fn account(&self, name: &str) -> Option<(bool, String, String, String)> {
        let mut root = self.root().await;
        let row: Option<(i64, String, String, String)> = root
            .exec_first(
                "SELECT COALESCE(JSON_VALUE(g.Priv, '$.account_locked'), 0) <> 0, u.plugin,
                        u.authentication_string, u.default_role
                 FROM mysql.user u JOIN mysql.global_priv g ON g.User = u.User AND g.Host = u.Host
                 WHERE u.User = ? AND u.Host = '%'",
                (name,),
            )
            .await
            .expect("read account");
        row.map(|(l, p, a, d)| (l != 0, p, a, d))
    }

    /// Roles granted to a grantee (`host` '%' for accounts, '' for MariaDB roles).
    pub async fn roles_of(&self, grantee: &str, host: &str) -> std::collections::BTreeSet<String> {
        let mut root = self.root().await;
        root.exec::<String, _, _>(
            "SELECT Role FROM mysql.roles_mapping WHERE User = ? AND Host = ?",
            (grantee, host),
        )
        .await
        .expect("read roles")
        .into_iter()
        .collect()
    }

    /// Give an account a password so a test can hold a live session as that person.
    pub async fn open_session_as(&self, name: &str) -> Conn {
        let mut root = self.root().await;
        let account = okta_rds_sync::db::mysql::sql::account(name).expect("quotable");
        root.query_drop(format!("ALTER USER {account} IDENTIFIED BY 'session-pw'"))
            .await
            .expect("set password");
        mariadb()
            .connect(name, "session-pw")
            .await
            .expect("session as the user")
    }

    /// Audit rows `(okta_id, action, outcome, detail)` in insertion order.
    pub async fn audit(&self) -> Vec<(String, String, String, String)> {
        let mut root = self.root().await;
        root.query(format!(
            "SELECT COALESCE(okta_id, ''), action, outcome, COALESCE(detail, '') FROM {}.audit ORDER BY id",
            self.state_schema
        ))
        .await
        .unwrap_or_default()
    }

    /// Replace the master password on the server and in the secret, as an RDS rotation does.
    pub async fn rotate_master_password(&mut self, sm: &aws_sdk_secretsmanager::Client, new: &str) {
        let mut root = self.root().await;
        let account = okta_rds_sync::db::mysql::sql::account(&self.master).expect("quotable");
        let password = okta_rds_sync::db::mysql::sql::quote_literal(new).expect("quotable");
        root.query_drop(format!("ALTER USER {account} IDENTIFIED BY {password}"))
            .await
            .expect("rotate");
        let json = serde_json::json!({ "username": self.master, "password": new });
        sm.put_secret_value()
            .secret_id(&self.master_secret_arn)
            .secret_string(json.to_string())
            .send()
            .await
            .expect("put secret");
        self.master_password = new.to_owned();
    }
}
