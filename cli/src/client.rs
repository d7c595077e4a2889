//! The database clients a person connects with: `psql` and `mysql`, always over TLS that verifies the
//! server's certificate chain against the RDS CAs (or a given CA file) and its host name. The token is
//! handed over in the environment (`PGPASSWORD`, `MYSQL_PWD`), never on the command line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The first executable file called `name` on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    find_program_in(name, &std::env::var_os("PATH").unwrap_or_default())
}

pub fn find_program_in(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A private temporary directory (mode 0700) holding the CA file, deleted when dropped.
#[derive(Debug)]
pub struct CaFile {
    dir: PathBuf,
    pub path: PathBuf,
}

impl CaFile {
    /// Write `pem` (the bundled RDS CAs, or a given file's content) where the client can read it.
    pub fn write(pem: &[u8]) -> Result<Self, String> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("okta-rds-sync-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join("rds-ca.pem");
        let file = Self { dir, path };
        std::fs::write(&file.path, pem)
            .map_err(|e| format!("cannot write {}: {e}", file.path.display()))?;
        Ok(file)
    }
}

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where to connect: the server's real name (what its certificate says), and the address and port to
/// dial when they differ (a forwarded local port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub hostname: String,
    pub port: u16,
    /// Dial this address instead of resolving `hostname` (SSM port forwarding: `127.0.0.1`).
    pub dial: Option<(String, u16)>,
}

/// A command to run: program, arguments and extra environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<OsString>,
    /// Variables set for the client only. The token is one of them: keep this out of logs.
    pub env: Vec<(String, String)>,
}

/// A libpq conninfo value, quoted: `'...'` with `\` and `'` escaped.
pub fn conninfo_value(value: &str) -> String {
    let mut out = String::from("'");
    for c in value.chars() {
        if matches!(c, '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// `psql` with a conninfo that requires TLS with the chain and the host name verified.
pub fn psql(
    endpoint: &Endpoint,
    database: &str,
    user: &str,
    ca_file: &Path,
    token: &str,
    extra: &[OsString],
) -> Invocation {
    let (addr, port) = match &endpoint.dial {
        Some((addr, port)) => (Some(addr.as_str()), *port),
        None => (None, endpoint.port),
    };
    let mut conninfo = format!("host={}", conninfo_value(&endpoint.hostname));
    if let Some(addr) = addr {
        conninfo.push_str(&format!(" hostaddr={}", conninfo_value(addr)));
    }
    conninfo.push_str(&format!(
        " port={port} dbname={} user={} sslmode=verify-full sslrootcert={} gssencmode=disable",
        conninfo_value(database),
        conninfo_value(user),
        conninfo_value(&ca_file.display().to_string()),
    ));
    let mut args = vec![OsString::from(format!("--dbname={conninfo}"))];
    args.extend(extra.iter().cloned());
    Invocation {
        program: "psql".into(),
        args,
        env: vec![("PGPASSWORD".into(), token.into())],
    }
}

/// Which `mysql` client is installed: their TLS options differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlFlavor {
    /// Oracle's client (8.0+): `--ssl-mode=VERIFY_IDENTITY`.
    Mysql,
    /// MariaDB's client: `--ssl-verify-server-cert`.
    Mariadb,
}

impl MysqlFlavor {
    /// From the first line of `mysql --version`.
    pub fn from_version(text: &str) -> Self {
        if text.to_ascii_lowercase().contains("mariadb") {
            MysqlFlavor::Mariadb
        } else {
            MysqlFlavor::Mysql
        }
    }

    pub fn detect(program: &Path) -> Self {
        let out = std::process::Command::new(program)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output();
        Self::from_version(
            &out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default(),
        )
    }
}

/// `mysql` over TLS verified against `ca_file`, with the cleartext plugin RDS IAM authentication needs
/// (safe: the connection is encrypted and the server verified first; Oracle's client needs
/// `--enable-cleartext-plugin`, MariaDB's sends it when asked).
///
/// Through a forwarded port the client dials `127.0.0.1`, and MySQL's clients cannot be told another
/// name to verify: then the chain is verified (`VERIFY_CA`), not the host name.
pub fn mysql(
    endpoint: &Endpoint,
    flavor: MysqlFlavor,
    user: &str,
    ca_file: &Path,
    token: &str,
    extra: &[OsString],
) -> Invocation {
    let (host, port, forwarded) = match &endpoint.dial {
        Some((addr, port)) => (addr.as_str(), *port, true),
        None => (endpoint.hostname.as_str(), endpoint.port, false),
    };
    let mut args: Vec<OsString> = vec![
        format!("--host={host}").into(),
        format!("--port={port}").into(),
        format!("--user={user}").into(),
        "--protocol=TCP".into(),
        format!("--ssl-ca={}", ca_file.display()).into(),
    ];
    match (flavor, forwarded) {
        (MysqlFlavor::Mysql, false) => args.push("--ssl-mode=VERIFY_IDENTITY".into()),
        (MysqlFlavor::Mysql, true) => args.push("--ssl-mode=VERIFY_CA".into()),
        (MysqlFlavor::Mariadb, false) => {
            args.extend(["--ssl".into(), "--ssl-verify-server-cert".into()])
        }
        // MariaDB's client has no "TLS required, chain verified" mode: with `--ssl` alone it falls back to
        // plaintext if the server offers no TLS, which would hand the token to whatever answers on the
        // forwarded port. Verifying fails closed (the name is 127.0.0.1); `connect` refuses this case first.
        (MysqlFlavor::Mariadb, true) => {
            args.extend(["--ssl".into(), "--ssl-verify-server-cert".into()])
        }
    }
    // MariaDB's client sends the cleartext password when the server asks, and warns about this option.
    if flavor == MysqlFlavor::Mysql {
        args.push("--enable-cleartext-plugin".into());
    }
    args.extend(extra.iter().cloned());
    Invocation {
        program: "mysql".into(),
        args,
        env: vec![("MYSQL_PWD".into(), token.into())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn psql_verifies_the_real_name_even_through_a_tunnel() {
        let direct = Endpoint {
            hostname: "app.xyz.eu-west-1.rds.amazonaws.com".into(),
            port: 5432,
            dial: None,
        };
        let inv = psql(
            &direct,
            "app",
            "jane.doe@acme.com",
            Path::new("/tmp/x/ca.pem"),
            "TOKEN",
            &["-c".into(), "select 1".into()],
        );
        assert_eq!(
            s(&inv.args),
            [
                "--dbname=host='app.xyz.eu-west-1.rds.amazonaws.com' port=5432 dbname='app' user='jane.doe@acme.com' sslmode=verify-full sslrootcert='/tmp/x/ca.pem' gssencmode=disable",
                "-c",
                "select 1"
            ]
        );
        assert!(!s(&inv.args).concat().contains("TOKEN"));
        assert_eq!(inv.env, [("PGPASSWORD".to_owned(), "TOKEN".to_owned())]);
        let tunnel = Endpoint {
            dial: Some(("127.0.0.1".into(), 40001)),
            ..direct
        };
        let inv = psql(&tunnel, "o'k\\", "u", Path::new("/c"), "T", &[]);
        assert_eq!(
            s(&inv.args),
            [
                "--dbname=host='app.xyz.eu-west-1.rds.amazonaws.com' hostaddr='127.0.0.1' port=40001 dbname='o\\'k\\\\' user='u' sslmode=verify-full sslrootcert='/c' gssencmode=disable"
            ]
        );
    }

    #[test]
    fn mysql_arguments_per_client() {
        let direct = Endpoint {
            hostname: "db.example.com".into(),
            port: 3306,
            dial: None,
        };
        let inv = mysql(
            &direct,
            MysqlFlavor::Mariadb,
            "jane",
            Path::new("/c.pem"),
            "TOKEN",
            &["-e".into(), "select 1".into()],
        );
        assert_eq!(
            s(&inv.args),
            [
                "--host=db.example.com",
                "--port=3306",
                "--user=jane",
                "--protocol=TCP",
                "--ssl-ca=/c.pem",
                "--ssl",
                "--ssl-verify-server-cert",
                "-e",
                "select 1"
            ]
        );
        assert_eq!(inv.env, [("MYSQL_PWD".to_owned(), "TOKEN".to_owned())]);
        assert!(!s(&inv.args).concat().contains("TOKEN"));
        let inv = mysql(
            &direct,
            MysqlFlavor::Mysql,
            "jane",
            Path::new("/c.pem"),
            "T",
            &[],
        );
        assert!(s(&inv.args).contains(&"--ssl-mode=VERIFY_IDENTITY".to_owned()));
        assert!(s(&inv.args).contains(&"--enable-cleartext-plugin".to_owned()));
        let tunnel = Endpoint {
            dial: Some(("127.0.0.1".into(), 40002)),
            ..direct
        };
        let inv = mysql(
            &tunnel,
            MysqlFlavor::Mysql,
            "jane",
            Path::new("/c.pem"),
            "T",
            &[],
        );
        let args = s(&inv.args);
        assert!(args.contains(&"--host=127.0.0.1".to_owned()), "{args:?}");
        assert!(args.contains(&"--port=40002".to_owned()), "{args:?}");
        assert!(
            args.contains(&"--ssl-mode=VERIFY_CA".to_owned()),
            "{args:?}"
        );
        assert_eq!(
            MysqlFlavor::from_version("mysql  Ver 15.1 Distrib 10.11.19-MariaDB"),
            MysqlFlavor::Mariadb
        );
        assert_eq!(
            MysqlFlavor::from_version(
                "mysql  Ver 8.4.3 for Linux on x86_64 (MySQL Community Server - GPL)"
            ),
            MysqlFlavor::Mysql
        );
    }

    #[test]
    fn programs_are_found_on_the_path_only_when_executable() {
        let ca = CaFile::write(b"pem").unwrap();
        let dir = ca.path.parent().unwrap().to_owned();
        std::fs::write(dir.join("notexec"), "x").unwrap();
        let path = std::env::join_paths([dir.clone()]).unwrap();
        assert_eq!(find_program_in("notexec", &path), None);
        assert_eq!(find_program_in("missing", &path), None);
        assert!(find_program_in("sh", std::ffi::OsStr::new("/bin:/usr/bin")).is_some());
        drop(ca);
        assert!(!dir.exists());
    }
}
