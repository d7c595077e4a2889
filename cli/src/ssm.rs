//! `--via-ssm`: reach a private database through an SSM port-forwarding session
//! (`AWS-StartPortForwardingSessionToRemoteHost`) started with the AWS CLI and its session-manager plugin.

use std::ffi::OsString;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::find_program_in;

/// The SSM document that forwards a local port to a host and port the instance can reach.
pub const DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";

/// The arguments of `aws` for the session.
pub fn start_session_args(
    instance: &str,
    host: &str,
    port: u16,
    local_port: u16,
    region: Option<&str>,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "ssm".into(),
        "start-session".into(),
        "--target".into(),
        instance.into(),
        "--document-name".into(),
        DOCUMENT.into(),
        "--parameters".into(),
        format!("host={host},portNumber={port},localPortNumber={local_port}").into(),
    ];
    if let Some(region) = region {
        args.extend(["--region".into(), region.into()]);
    }
    args
}

/// Check the instance id, and that `aws` and `session-manager-plugin` are on `path`: the path of `aws`.
pub fn check_tools(instance: &str, path: &std::ffi::OsStr) -> Result<std::path::PathBuf, String> {
    let valid = instance.starts_with("i-") || instance.starts_with("mi-");
    if !valid
        || !instance[instance.find('-').unwrap_or(0) + 1..]
            .chars()
            .all(|c| c.is_ascii_hexdigit())
        || instance.len() < 4
    {
        return Err(format!(
            "--via-ssm {instance:?}: expected an EC2 instance id (i-0123456789abcdef0) or a managed node id (mi-…)"
        ));
    }
    let aws = find_program_in("aws", path).ok_or(
        "--via-ssm needs the AWS CLI (`aws`) on PATH: install it \
         (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)",
    )?;
    if find_program_in("session-manager-plugin", path).is_none() {
        return Err("--via-ssm needs the Session Manager plugin (`session-manager-plugin`) on PATH: \
                    install it (https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html)"
            .into());
    }
    Ok(aws)
}

/// A free local port (the session listens on it; there is a short race, as with any such choice).
pub fn free_local_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free local port: {e}"))
}

/// The running session; stopped (with its plugin) when dropped.
#[derive(Debug)]
pub struct Session {
    child: Child,
    pub local_port: u16,
}

impl Session {
    /// Start `aws ssm start-session …` in its own process group and wait until the local port accepts
    /// connections (or the session ends, or `timeout` passes).
    pub fn start(
        aws: &std::path::Path,
        args: &[OsString],
        local_port: u16,
        timeout: Duration,
    ) -> Result<Self, String> {
        use std::os::unix::process::CommandExt;
        let child = Command::new(aws)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", aws.display()))?;
        let mut session = Self { child, local_port };
        let deadline = Instant::now() + timeout;
        loop {
            // The port must be the session's: a listener while the session has already ended is someone
            // else's (another local user may bind a port between our choice and the session's).
            if std::net::TcpStream::connect(("127.0.0.1", local_port)).is_ok()
                && matches!(session.child.try_wait(), Ok(None))
            {
                return Ok(session);
            }
            if let Ok(Some(status)) = session.child.try_wait() {
                return Err(format!(
                    "the SSM session ended before forwarding the port ({status}); see the AWS CLI's message above"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the SSM session did not open local port {local_port} within {} s",
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The whole group: the AWS CLI and the session-manager-plugin it started.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_command() {
        let args = start_session_args(
            "i-0123456789abcdef0",
            "app.xyz.eu-west-1.rds.amazonaws.com",
            5432,
            40001,
            Some("eu-west-1"),
        );
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
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
                "host=app.xyz.eu-west-1.rds.amazonaws.com,portNumber=5432,localPortNumber=40001",
                "--region",
                "eu-west-1"
            ]
        );
    }

    #[test]
    fn missing_tools_and_bad_ids_are_clear() {
        let empty = tempdir();
        let path = std::env::join_paths([empty.0.clone()]).unwrap();
        let err = check_tools("i-0123456789abcdef0", &path).unwrap_err();
        assert!(err.contains("AWS CLI (`aws`)"), "{err}");
        write_exec(&empty.0.join("aws"));
        let err = check_tools("i-0123456789abcdef0", &path).unwrap_err();
        assert!(err.contains("session-manager-plugin"), "{err}");
        write_exec(&empty.0.join("session-manager-plugin"));
        assert_eq!(
            check_tools("i-0123456789abcdef0", &path).unwrap(),
            empty.0.join("aws")
        );
        for bad in ["", "i-", "db-1", "i-xyz", "i-012;rm"] {
            let err = check_tools(bad, &path).unwrap_err();
            assert!(err.contains("instance id"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_session_that_ends_early_is_reported_and_stopped() {
        let err = Session::start(
            std::path::Path::new("/bin/sh"),
            &["-c".into(), "exit 3".into()],
            free_local_port().unwrap(),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(err.contains("ended before forwarding"), "{err}");
    }

    #[test]
    fn a_session_waits_for_its_port() {
        let port = free_local_port().unwrap();
        // Stands in for the plugin: listens on the port after a moment.
        let script = format!(
            "sleep 0.3; exec python3 -c 'import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((\"127.0.0.1\", {port})); s.listen(); time.sleep(30)'"
        );
        let started = Instant::now();
        let session = Session::start(
            std::path::Path::new("/bin/sh"),
            &["-c".into(), script.into()],
            port,
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        let pid = session.child.id();
        drop(session);
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true)
        );
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tempdir() -> TempDir {
        let ca = crate::client::CaFile::write(b"").unwrap();
        let dir = ca.path.parent().unwrap().with_extension("ssm");
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn write_exec(path: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
