//! `make demo`: run the real okta-hook binary against a throwaway PostgreSQL (TLS, SCRAM, an `rds_iam`
//! stand-in, a non-superuser CREATEROLE master as on RDS) and moto's Secrets Manager, replay `events/`
//! through a Lambda Runtime API emulator, and print the resulting roles, memberships and audit rows.
//!
//! Usage: demo [path/to/okta-hook]   (default: target/debug/okta-hook)

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
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
    println!("Starting a throwaway PostgreSQL (TLS, SCRAM) and moto's Secrets Manager...");
    let s = servers();
    let env = TestEnv::named("demo").await;
    let config = work.join("config.toml");
    std::fs::write(&config, env.config_toml())?;
    println!(
        "  PostgreSQL  localhost:{} (database {}, master {}, CA {})",
        s.pg_port,
        env.database,
        env.master,
        s.ca_file.display()
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
    for (name, what) in STORY {
        if *name == "10-user-deactivate-jane" {
            session = Some(env.open_session_as("jane.roe@acme.com").await);
        }
        let answer = api
            .invoke(Bytes::from(sample(name)), Duration::from_secs(60))
            .await?;
        let answer: serde_json::Value = serde_json::from_slice(&answer)?;
        let body: serde_json::Value = answer["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or_default();
        let brief = match body.get("targets").and_then(|t| t.get(0)) {
            Some(t) => format!(
                "events {} ignored {} | changes {} refused {} duplicate {} sessions killed {}",
                body["events"],
                body["ignored"],
                t["changes"],
                t["refused"],
                t["duplicate_delivery"],
                t["sessions_terminated"]
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
            "\njane's live session after her deactivation: {}",
            if s.simple_query("SELECT 1").await.is_err() {
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
    println!("\nThe servers stop and their files are removed when this program exits.");
    Ok(())
}
