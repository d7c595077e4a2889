//! `make demo`: run the real okta-hook binary against two targets, a throwaway PostgreSQL (TLS, SCRAM, an
//! `rds_iam` stand-in, a non-superuser CREATEROLE master as on RDS) and a throwaway MariaDB (TLS, `pam`
//! standing in for RDS's IAM plugin, a master without SUPER), with moto's Secrets Manager; replay `events/`
//! through a Lambda Runtime API emulator, and print the resulting roles, accounts and audit rows of both.
//!
//! Usage: demo [path/to/okta-hook]   (default: target/debug/okta-hook)

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use mysql_async::prelude::Queryable;
use okta_rds_sync_tests::mariadb::{MyEnv, mariadb};
use okta_rds_sync_tests::okta::sample;
use okta_rds_sync_tests::runtime::RuntimeApi;
use okta_rds_sync_tests::{TestEnv, function_binary, function_env, servers};

const STORY: &[(&str, &str)] = &[
    ("challenge", "Okta's one-time verification GET"),
    ("bad-auth", "a delivery with the wrong secret"),
    ("malformed-body", "a body that is not JSON"),
    ("wrong-method", "a PUT"),
    ("01-group-membership-add", "jane joins eng-prod-access"),
    (
        "02-batch",
        "batch: bob joins writers+readers, jane joins writers, 1 unhandled event",
    ),
    ("03-user-suspend", "bob is suspended"),
    ("04-user-unsuspend", "bob is unsuspended"),
    ("05-user-update-profile", "jane's login changes to jane.roe"),
    ("06-group-membership-remove", "jane leaves eng-prod-writers"),
    ("07-user-deactivate", "bob is deactivated"),
    ("08-user-activate", "bob is activated again"),
    ("09-group-delete", "eng-prod-writers is deleted"),
    (
        "10-user-deactivate-jane",
        "jane is deactivated (she has a live session)",
    ),
    ("11-user-delete-initiated", "jane's deletion starts"),
    (
        "unknown-event-type",
        "an unhandled type and a FAILURE outcome",
    ),
    (
        "01-group-membership-add",
        "Okta redelivers the first delivery",
    ),
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let binary = function_binary("debug")?;
    let work = root.join(".demo");
    std::fs::create_dir_all(&work)?;
    println!(
        "Starting a throwaway PostgreSQL (TLS, SCRAM), a throwaway MariaDB (TLS) and moto's Secrets Manager..."
    );
    let s = servers();
    let env = TestEnv::named("demo").await;
    let my = MyEnv::new("demo", &env.sm).await;
    let config = work.join("config.toml");
    std::fs::write(
        &config,
        format!("{}\n{}", env.config_toml(), my.target_toml("app-mysql")),
    )?;
    println!(
        "  PostgreSQL  localhost:{} (database {}, master {}, CA {})",
        s.pg_port,
        env.database,
        env.master,
        s.ca_file.display()
    );
    println!(
        "  MariaDB     localhost:{} (master {}, IAM plugin pam)",
        mariadb().port,
        my.master
    );
    println!("  moto        {}", s.moto_url);
    println!("  config      {}", config.display());
    println!(
        "  grants      eng-prod-access ({}) -> {}; eng-prod-writers -> {}",
        okta_rds_sync_tests::READERS_GROUP,
        env.readonly_role,
        env.readwrite_role
    );

    let api = RuntimeApi::start().await?;
    let log = work.join("function.log");
    let lambda_env = function_env(&config, "info");
    let mut child = api.spawn_function(&binary, &lambda_env, Some(&log))?;
    println!(
        "  function    {} (logs: {})\n",
        binary.display(),
        log.display()
    );

    println!(
        "{:<28} {:>6}  what happens / response",
        "event file", "status"
    );
    let mut session = None;
    let mut my_session = None;
    for (name, what) in STORY {
        if *name == "10-user-deactivate-jane" {
            session = Some(env.open_session_as("jane.roe@acme.com").await);
            my_session = Some(my.open_session_as("jane.roe@acme.com").await);
        }
        let answer = api
            .invoke(Bytes::from(sample(name)), Duration::from_secs(60))
            .await?;
        let answer: serde_json::Value = serde_json::from_slice(&answer)?;
        let body: serde_json::Value = answer["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or_default();
        let brief = match body.get("targets").and_then(|t| t.as_array()) {
            Some(targets) => format!(
                "events {} ignored {} | {}",
                body["events"],
                body["ignored"],
                targets
                    .iter()
                    .map(|t| format!(
                        "{}: changes {} refused {} sessions killed {}",
                        t["target"].as_str().unwrap_or("?"),
                        t["changes"],
                        t["refused"],
                        t["sessions_terminated"]
                    ))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ),
            None => body.to_string(),
        };
        println!(
            "{name:<28} {:>6}  {what}\n{:<36}{brief}",
            answer["statusCode"], ""
        );
    }
    if let Some(s) = session {
        println!(
            "\njane's live PostgreSQL session after her deactivation: {}",
            if s.simple_query("SELECT 1").await.is_err() {
                "terminated"
            } else {
                "STILL ALIVE"
            }
        );
    }
    if let Some(mut s) = my_session {
        println!(
            "jane's live MariaDB session after her deactivation:    {}",
            if s.query_drop("SELECT 1").await.is_err() {
                "terminated"
            } else {
                "STILL ALIVE"
            }
        );
    }
    child.kill()?;
    child.wait()?;

    let su = env.superuser().await;
    println!(
        "\nRoles managed by okta-rds-sync (members of {}):",
        env.marker_role
    );
    println!(
        "{:<24} {:<6} {:<26} member of",
        "role", "login", "okta user (comment)"
    );
    let rows = su
        .query(
            "SELECT r.rolname::text, r.rolcanlogin, coalesce(shobj_description(r.oid, 'pg_authid'), ''),
                    array_to_string(ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                                          WHERE m.member = r.oid AND g.rolname <> $1 ORDER BY 1), ', ')
             FROM pg_roles r WHERE EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                                           WHERE m.member = r.oid AND g.rolname = $1) ORDER BY 1",
            &[&env.marker_role],
        )
        .await?;
    for r in rows {
        let (name, login, comment, member_of): (String, bool, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        println!(
            "{name:<24} {:<6} {comment:<26} {member_of}",
            if login { "yes" } else { "no" }
        );
    }
    println!("\nAudit trail (okta_rds_sync.audit):");
    println!(
        "{:<3} {:<18} {:<20} {:<18} {:<8} {:>9}  detail",
        "#", "okta user", "role", "action", "outcome", "ms"
    );
    let rows = su
        .query(
            "SELECT id, coalesce(okta_id,''), coalesce(role_name,''), action, outcome, coalesce(duration_ms,0), coalesce(detail,'')
             FROM okta_rds_sync.audit ORDER BY id",
            &[],
        )
        .await?;
    for r in rows {
        let (id, user, role, action, outcome, ms, detail): (
            i64,
            String,
            String,
            String,
            String,
            f64,
            String,
        ) = (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
        );
        println!("{id:<3} {user:<18} {role:<20} {action:<18} {outcome:<8} {ms:>9.1}  {detail}");
    }
    let mut root = my.root().await;
    println!(
        "\nMariaDB accounts managed by okta-rds-sync (holding {}):",
        my.marker_role
    );
    println!(
        "{:<24} {:<7} {:<10} {:<18} roles of its default role",
        "account", "locked", "auth", "default role"
    );
    let accounts: Vec<(String, i64, String, String)> = root
        .exec(
            "SELECT u.User, COALESCE(JSON_VALUE(g.Priv, '$.account_locked'), 0) <> 0,
                    CONCAT(u.plugin, ' AS ', u.authentication_string), u.default_role
             FROM mysql.user u JOIN mysql.global_priv g ON g.User = u.User AND g.Host = u.Host
             WHERE u.Host = '%' AND EXISTS (SELECT 1 FROM mysql.roles_mapping m
                                            WHERE m.User = u.User AND m.Host = '%' AND m.Role = ?)
               AND u.User <> ?
             ORDER BY 1",
            (&my.marker_role, &my.master),
        )
        .await?;
    for (user, locked, auth, default_role) in accounts {
        let roles = my.roles_of(&default_role, "").await;
        println!(
            "{user:<24} {:<7} {auth:<10} {default_role:<18} {}",
            if locked != 0 { "yes" } else { "no" },
            roles.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    println!("\nMariaDB audit trail ({}.audit):", my.state_schema);
    for (user, action, outcome, detail) in my.audit().await {
        println!("    {user:<18} {action:<22} {outcome:<8} {detail}");
    }
    println!("\nThe servers stop and their files are removed when this program exits.");
    Ok(())
}
