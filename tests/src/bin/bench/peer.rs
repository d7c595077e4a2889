//! The peer: `tests/peers/python-naive`, the Python Lambda (boto3 + psycopg) a user would write instead,
//! run under the same emulator against the same database, with the packages `make bench` installs in .venv.

use std::path::PathBuf;

use okta_rds_sync_tests::{
    DEMO_SECRET, READERS_GROUP, TestEnv, create_secret, function_env, servers,
};

/// How to start the peer: its `bootstrap` and its environment.
pub struct Peer {
    pub bootstrap: PathBuf,
    pub env: Vec<(&'static str, String)>,
}

impl Peer {
    /// Configure the peer for `env`'s database: the same header secret (as its `current`) and master
    /// secret, the readers group mapped to the same role.
    pub async fn new(env: &TestEnv) -> Result<Self, String> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = root.join("../.venv/bin/python");
        let ready = std::process::Command::new(&python)
            .args(["-c", "import awslambdaric, boto3, psycopg"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ready {
            return Err(format!(
                "{} lacks awslambdaric, boto3 or psycopg: run `make bench`, which installs them",
                python.display()
            ));
        }
        let hook = serde_json::json!({ "current": DEMO_SECRET, "previous": DEMO_SECRET });
        let hook_arn = create_secret(
            &env.sm,
            &format!("{}-peer-hook", env.prefix),
            &hook.to_string(),
        )
        .await;
        let groups = serde_json::json!({ READERS_GROUP: [env.readonly_role] });
        let config = servers().dir.join("peer-config");
        std::fs::write(
            &config,
            format!(
                "hook_arn={hook_arn}\ndb_arn={}\nport={}\ndatabase={}\nca={}\ngroups={groups}\n",
                env.master_secret_arn,
                servers().pg_port,
                env.database,
                servers().ca_file.display(),
            ),
        )
        .map_err(|e| e.to_string())?;
        let mut vars = function_env(&config, "warn");
        vars.retain(|(k, _)| *k != "OKTA_RDS_SYNC_CONFIG");
        vars.push(("AWS_DEFAULT_REGION", "us-east-1".into()));
        vars.push(("BASELINE_CONFIG", config.display().to_string()));
        vars.push(("BASELINE_PYTHON", python.display().to_string()));
        Ok(Self {
            bootstrap: root.join("peers/python-naive/bootstrap"),
            env: vars,
        })
    }
}
