//! `okta-rds-sync`: the command-line tool for people and operators. It gets RDS IAM auth tokens, connects
//! `psql`/`mysql` over verified TLS (optionally through an SSM port-forwarding session), checks configs
//! with the functions' own validation, and prints a target's audit trail.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use okta_rds_sync::config::{Config, Engine, TargetConfig};
use okta_rds_sync_cli::{audit, client, ssm, token};

const EXIT_STATUS: &str = "\
Exit status:
  0  success
  1  failure (bad config, no credentials, connection or query error; the message says which)
  2  usage error (unknown command, flag or value)
`connect` exits with the client's own status once psql/mysql has run.";

#[derive(Debug, Parser)]
#[command(
    name = "okta-rds-sync",
    version,
    about = "Connect to RDS databases with IAM auth tokens, check okta-rds-sync configs, read audit trails",
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print an RDS IAM authentication token (as `aws rds generate-db-auth-token`), valid 15 minutes.
    ///
    /// Uses the default AWS credential chain: environment, profiles (IAM Identity Center / SSO,
    /// credential_process), container and instance roles.
    #[command(after_help = EXIT_STATUS)]
    Token {
        /// The database endpoint the token is for (as clients connect to it).
        #[arg(long)]
        hostname: String,
        /// The database port.
        #[arg(long)]
        port: u16,
        /// The database user to log in as.
        #[arg(long)]
        username: String,
        /// The AWS region (default: AWS_REGION / the profile's, else the one in an RDS host name).
        #[arg(long)]
        region: Option<String>,
    },
    /// Connect psql or mysql to a configured target with an IAM token, over TLS verifying the server.
    ///
    /// The token is passed in the client's environment (PGPASSWORD / MYSQL_PWD), never on its command
    /// line. psql runs with sslmode=verify-full; mysql verifies the certificate and the host name, and
    /// sends the token with the cleartext plugin as RDS requires. Arguments after `--` go to the client.
    ///
    /// With --via-ssm, psql dials the forwarded local port and still verifies the target's real host
    /// name (host=<endpoint> hostaddr=127.0.0.1); mysql clients cannot be given another name to verify,
    /// so through a tunnel they verify the certificate chain only.
    #[command(after_help = EXIT_STATUS)]
    Connect {
        /// The target's `name` in the config.
        target: String,
        #[command(flatten)]
        config: ConfigArg,
        /// The database user: your role name (default: $OKTA_RDS_SYNC_USERNAME).
        #[arg(long, env = "OKTA_RDS_SYNC_USERNAME")]
        username: Option<String>,
        /// The database to open (PostgreSQL; default: the target's `database`).
        #[arg(long)]
        database: Option<String>,
        /// Trust this PEM CA bundle instead of the target's `ca_file` or the bundled RDS CAs.
        #[arg(long, env = "OKTA_RDS_SYNC_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// The AWS region to sign for and of the SSM session (default: AWS_REGION / the profile's, else
        /// the one in an RDS host name).
        #[arg(long)]
        region: Option<String>,
        /// Reach the database through an SSM port-forwarding session via this EC2 instance / managed node
        /// (needs the AWS CLI and the session-manager-plugin).
        #[arg(long, value_name = "INSTANCE_ID")]
        via_ssm: Option<String>,
        /// Arguments for psql / mysql (after `--`).
        #[arg(last = true)]
        client_args: Vec<OsString>,
    },
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a target's audit trail: who got or lost what, when, and how long it took.
    ///
    /// Reads the `audit` table of the target's state schema as the master user (credentials from the
    /// target's Secrets Manager secret, as the functions do). Newest `--limit` records, oldest first.
    #[command(after_help = EXIT_STATUS)]
    Audit {
        /// The target's `name` in the config.
        target: String,
        #[command(flatten)]
        config: ConfigArg,
        /// Only this user: an Okta login (mapped to its role name as the config does), role name or Okta id.
        #[arg(long, value_name = "LOGIN")]
        user: Option<String>,
        /// Only records since an RFC 3339 time, or for a duration back from now (90s, 30m, 24h, 7d, 2w).
        #[arg(long)]
        since: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// At most this many records (the newest).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and validate a config as the functions do, offline: prints `ok: …` or the problem.
    #[command(after_help = EXIT_STATUS)]
    Check {
        /// The config file (default: $OKTA_RDS_SYNC_CONFIG, else ./config.toml).
        path: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The config file (default: $OKTA_RDS_SYNC_CONFIG, else ./config.toml).
    #[arg(long = "config", value_name = "PATH")]
    path: Option<PathBuf>,
}

impl ConfigArg {
    fn resolve(path: Option<&Path>) -> PathBuf {
        path.map(Path::to_owned)
            .or_else(|| std::env::var_os(okta_rds_sync::config::CONFIG_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("config.toml"))
    }

    fn load(&self) -> Result<Config, String> {
        Config::load(&Self::resolve(self.path.as_deref())).map_err(|e| e.to_string())
    }
}

fn find_target<'a>(config: &'a Config, name: &str) -> Result<&'a TargetConfig, String> {
    config.target(name).ok_or_else(|| {
        let names: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        format!(
            "no target {name:?} in the config; targets: {}",
            names.join(", ")
        )
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("okta-rds-sync: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("okta-rds-sync: error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Token {
            hostname,
            port,
            username,
            region,
        } => {
            let token = token::generate(&hostname, port, &username, region.as_deref()).await?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check { path }) => {
            config_check(&ConfigArg::resolve(path.as_deref()))
        }
        Command::Connect {
            target,
            config,
            username,
            database,
            ca_file,
            region,
            via_ssm,
            client_args,
        } => {
            let config = config.load()?;
            let target = find_target(&config, &target)?;
            let username = username.filter(|u| !u.is_empty()).ok_or(
                "no database user: pass --username (your role name, as okta-rds-sync made it from your Okta login) \
                 or set OKTA_RDS_SYNC_USERNAME",
            )?;
            connect(Connect {
                target,
                username: &username,
                database: database.as_deref(),
                ca_file: ca_file.as_deref().or(target.ca_file.as_deref()),
                region: region.as_deref(),
                via_ssm: via_ssm.as_deref(),
                client_args: &client_args,
            })
            .await
        }
        Command::Audit {
            target,
            config,
            user,
            since,
            json,
            limit,
        } => {
            let config = config.load()?;
            let target = find_target(&config, &target)?;
            let filter = audit::Filter {
                users: user.as_deref().map(|u| audit::user_names(&config, u)),
                since: since
                    .as_deref()
                    .map(|s| audit::parse_since(s, chrono::Utc::now()))
                    .transpose()?,
                limit,
            };
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            let records = audit::read(target, &sdk, &filter).await?;
            if json {
                for r in &records {
                    println!("{}", r.json(&target.name));
                }
            } else if records.is_empty() {
                println!("no audit records");
            } else {
                print!("{}", audit::table(&records));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn config_check(path: &Path) -> Result<ExitCode, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let targets: Vec<String> = config
        .targets
        .iter()
        .map(|t| {
            let engine = match t.engine {
                Engine::Postgres => "postgres",
                Engine::Mysql => "mysql",
            };
            format!("{} ({engine} {}:{})", t.name, t.host, t.port())
        })
        .collect();
    println!(
        "ok: {}: {} target{} ({}), {} grant{}",
        path.display(),
        targets.len(),
        if targets.len() == 1 { "" } else { "s" },
        targets.join(", "),
        config.grants.len(),
        if config.grants.len() == 1 { "" } else { "s" },
    );
    Ok(ExitCode::SUCCESS)
}

struct Connect<'a> {
    target: &'a TargetConfig,
    username: &'a str,
    database: Option<&'a str>,
    ca_file: Option<&'a Path>,
    region: Option<&'a str>,
    via_ssm: Option<&'a str>,
    client_args: &'a [OsString],
}

fn missing_client(name: &str) -> String {
    match name {
        "psql" => "psql not found on PATH: install the PostgreSQL client \
                   (Debian/Ubuntu: apt-get install postgresql-client; macOS: brew install libpq)"
            .into(),
        _ => "mysql not found on PATH: install a MySQL or MariaDB client \
              (Debian/Ubuntu: apt-get install default-mysql-client; macOS: brew install mysql-client)"
            .into(),
    }
}

async fn connect(c: Connect<'_>) -> Result<ExitCode, String> {
    let target = c.target;
    let program_name = match target.engine {
        Engine::Postgres => "psql",
        Engine::Mysql => "mysql",
    };
    let program = client::find_program(program_name).ok_or_else(|| missing_client(program_name))?;
    // The CA bundle: a given file (checked to hold certificates), else the bundled RDS CAs in a temp file.
    let (pem, origin) = match c.ca_file {
        Some(path) => (
            std::fs::read(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => (
            okta_rds_sync::tls::RDS_CA_BUNDLE.to_vec(),
            "bundled RDS CA bundle".to_owned(),
        ),
    };
    okta_rds_sync::tls::parse_bundle(&pem, &origin).map_err(|e| e.to_string())?;
    let ca = client::CaFile::write(&pem)?;
    if c.via_ssm.is_some()
        && target.engine == Engine::Mysql
        && client::MysqlFlavor::detect(&program) == client::MysqlFlavor::Mariadb
    {
        return Err(format!(
            "--via-ssm with MariaDB's mysql client ({}) is refused: through the forwarded port it cannot both \
             require TLS and verify the server (its --ssl falls back to plaintext, which would hand your token to \
             whatever answers on the port). Use Oracle's MySQL client (8.0+), or connect without --via-ssm.",
            program.display()
        ));
    }
    // Ctrl-C belongs to the client (same terminal, same process group): keep ourselves alive so the temp
    // CA file and the SSM session are cleaned up when it ends. Installed before the session starts, so an
    // interrupt while it opens does not leave the forward running.
    let _interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let aws = match c.via_ssm {
        Some(instance) => Some(ssm::check_tools(
            instance,
            &std::env::var_os("PATH").unwrap_or_default(),
        )?),
        None => None,
    };

    let token = token::generate(&target.host, target.port(), c.username, c.region).await?;

    let session = match (c.via_ssm, aws) {
        (Some(instance), Some(aws)) => {
            let local_port = ssm::free_local_port()?;
            let args = ssm::start_session_args(
                instance,
                &target.host,
                target.port(),
                local_port,
                c.region,
            );
            eprintln!(
                "okta-rds-sync: forwarding 127.0.0.1:{local_port} to {}:{} through {instance} (SSM)",
                target.host,
                target.port()
            );
            Some(ssm::Session::start(
                &aws,
                &args,
                local_port,
                Duration::from_secs(60),
            )?)
        }
        _ => None,
    };
    let endpoint = client::Endpoint {
        hostname: target.host.clone(),
        port: target.port(),
        dial: session
            .as_ref()
            .map(|s| ("127.0.0.1".to_owned(), s.local_port)),
    };
    let invocation = match target.engine {
        Engine::Postgres => client::psql(
            &endpoint,
            c.database.unwrap_or(target.database()),
            c.username,
            &ca.path,
            &token,
            c.client_args,
        ),
        Engine::Mysql => client::mysql(
            &endpoint,
            client::MysqlFlavor::detect(&program),
            c.username,
            &ca.path,
            &token,
            c.client_args,
        ),
    };
    let mut child = std::process::Command::new(&program)
        .args(&invocation.args)
        .envs(invocation.env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    drop(token);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{program_name}: {e}"))?;
    drop(session);
    drop(ca);
    Ok(exit_code(status))
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
