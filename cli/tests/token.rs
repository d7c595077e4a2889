//! `token`: byte-for-byte what botocore's `generate_db_auth_token` makes for the same credentials and
//! signing time (botocore from the project's `.venv`, installed by `make setup`), and clear errors when
//! there are no usable credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use okta_rds_sync_cli::token::auth_token;

const BIN: &str = env!("CARGO_BIN_EXE_okta-rds-sync");

/// botocore's token, with its clock frozen at `epoch`. `crt`: let botocore use the AWS CRT signer (as
/// the AWS CLI v2 does) when awscrt is installed; otherwise its own Python SigV4 signer.
#[allow(clippy::too_many_arguments)]
fn botocore(
    host: &str,
    port: u16,
    user: &str,
    region: &str,
    creds: Creds<'_>,
    epoch: u64,
    crt: bool,
) -> String {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.is_file(),
        "{} not found: run `make setup` (botocore comes with moto)",
        python.display()
    );
    let script = r#"
import sys, datetime
from unittest import mock
import botocore.session, botocore.auth
host, port, user, region, ak, sk, tok, epoch = sys.argv[1:9]
t = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
def frozen(remove_tzinfo=True):
    return t.replace(tzinfo=None) if remove_tzinfo else t
patches = [mock.patch.object(botocore.auth, "get_current_datetime", frozen)]
try:
    import botocore.crt.auth
    patches.append(mock.patch.object(botocore.crt.auth, "get_current_datetime", frozen))
except ImportError:
    pass
s = botocore.session.get_session()
s.set_credentials(ak, sk, tok or None)
c = s.create_client("rds", region_name=region)
for p in patches:
    p.start()
sys.stdout.write(c.generate_db_auth_token(host, int(port), user, Region=region))
"#;
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args([host, &port.to_string(), user, region, creds.0, creds.1])
        .arg(creds.2.unwrap_or(""))
        .arg(epoch.to_string())
        .env("BOTO_DISABLE_CRT", if crt { "false" } else { "true" })
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "botocore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The query parameters of a token, sorted (the CRT signer orders two of them differently).
fn params(token: &str) -> Vec<String> {
    let (base, query) = token.split_once("/?").unwrap();
    let mut v: Vec<String> = query.split('&').map(str::to_owned).collect();
    v.sort();
    v.insert(0, base.to_owned());
    v
}

/// Access key, secret key, session token.
type Creds<'a> = (&'a str, &'a str, Option<&'a str>);

/// Host, port, user, region, credentials, signing time.
const CASES: &[(&str, u16, &str, &str, Creds<'static>, u64)] = &[
    (
        "prod-instance.us-east-1.rds.amazonaws.com",
        3306,
        "peccy",
        "us-east-1",
        ("akid", "secret", None),
        1_724_709_600,
    ),
    (
        "app.c1x2y3z4abcd.eu-west-1.rds.amazonaws.com",
        5432,
        "jane.doe@acme.com",
        "eu-west-1",
        (
            "ASIAEXAMPLEKEY12345",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+/=="),
        ),
        1_796_558_399,
    ),
    (
        "mydb.cluster-ro-abc.ap-southeast-2.rds.amazonaws.com",
        3306,
        "O'Brien+ops é",
        "ap-southeast-2",
        ("AKIAIOSFODNN7EXAMPLE", "s3cr3t", None),
        1_000_000_000,
    ),
];

#[test]
fn tokens_are_byte_for_byte_botocore_s() {
    for &(host, port, user, region, creds, epoch) in CASES {
        let credentials =
            Credentials::new(creds.0, creds.1, creds.2.map(str::to_owned), None, "test");
        let ours = auth_token(
            host,
            port,
            user,
            region,
            &credentials,
            SystemTime::UNIX_EPOCH + Duration::from_secs(epoch),
        )
        .unwrap();
        let python_signer = botocore(host, port, user, region, creds, epoch, false);
        assert_eq!(ours, python_signer, "{user}@{host}");
        // With the CRT signer (AWS CLI v2): the same parameters and signature, two of them in another order.
        let crt_signer = botocore(host, port, user, region, creds, epoch, true);
        assert_eq!(params(&ours), params(&crt_signer), "{user}@{host}");
    }
}

/// The binary with the default credential chain fed by environment variables: the token it prints is
/// botocore's for the signing time it carries.
#[test]
fn the_binary_signs_with_the_default_chain() {
    let home = TempHome::new();
    let (host, port, user) = (
        "app.c1x2y3z4abcd.eu-west-1.rds.amazonaws.com",
        5432,
        "jane.doe@acme.com",
    );
    let creds = (
        "ASIAEXAMPLEKEY12345",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("FwoGZXIvYXdzEJr+/="),
    );
    let out = home
        .command()
        .args([
            "token",
            "--hostname",
            host,
            "--port",
            "5432",
            "--username",
            user,
        ])
        .env("AWS_ACCESS_KEY_ID", creds.0)
        .env("AWS_SECRET_ACCESS_KEY", creds.1)
        .env("AWS_SESSION_TOKEN", creds.2.unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let token = printed.strip_suffix('\n').unwrap();
    // The region came from the host name (no AWS_REGION, no profile).
    assert!(token.contains("%2Feu-west-1%2Frds-db%2F"), "{token}");
    let date = token
        .split("X-Amz-Date=")
        .nth(1)
        .unwrap()
        .get(..16)
        .unwrap();
    let signed_at = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc()
        .timestamp();
    let expected = botocore(
        host,
        port,
        user,
        "eu-west-1",
        creds,
        u64::try_from(signed_at).unwrap(),
        false,
    );
    assert_eq!(token, expected);
}

#[test]
fn no_or_expired_credentials_say_how_to_log_in() {
    let home = TempHome::new();
    let args = [
        "token",
        "--hostname",
        "db.example.com",
        "--port",
        "5432",
        "--username",
        "jane",
        "--region",
        "us-east-1",
    ];
    let out = home.command().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("aws sso login --profile"), "{err}");
    assert!(out.stdout.is_empty());

    // An IAM Identity Center profile that was never logged in (no cached SSO token).
    std::fs::write(
        home.dir.join("config"),
        "[profile dev]\nsso_session = acme\nsso_account_id = 111122223333\nsso_role_name = DatabaseUsers\nregion = us-east-1\n\
         [sso-session acme]\nsso_start_url = https://acme.awsapps.com/start\nsso_region = us-east-1\n",
    )
    .unwrap();
    let out = home
        .command()
        .args(args)
        .env("AWS_PROFILE", "dev")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("aws sso login --profile dev"), "{err}");

    // Usage errors exit 2.
    let out = home
        .command()
        .args(["token", "--hostname", "h"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// An empty AWS home: no profiles, no credentials, no instance metadata.
struct TempHome {
    dir: PathBuf,
}

impl TempHome {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("ors-cli-home-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.env("HOME", &self.dir)
            .env("AWS_CONFIG_FILE", self.dir.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.dir.join("credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }
}

impl Drop for TempHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
