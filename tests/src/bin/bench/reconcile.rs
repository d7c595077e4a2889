//! The reconcile at scale: 10,000 users in 3 groups listed from the local Okta emulator and converged in
//! PostgreSQL, first creating every role, then with nothing to change.

use std::path::Path;
use std::time::Instant;

use okta_rds_sync_tests::{READERS_GROUP, TestEnv};

/// A reconcile of 10,000 users in 3 groups: Okta listing (local emulator, 200 a page, DPoP) and
/// convergence in PostgreSQL, first creating every role, then with nothing to change.
pub async fn run(env: &TestEnv) -> Result<(), Box<dyn std::error::Error>> {
    use okta_rds_sync::okta_api::{OktaClient, OktaCredentials};
    let (private, public) = okta_rds_sync_tests::okta_keypair("ec");
    let okta = okta_rds_sync_tests::okta_server::OktaServer::start(
        "0oaBENCH",
        &public,
        jsonwebtoken::Algorithm::ES256,
    )
    .await;
    let user = |i: usize| {
        (
            format!("00uRB{i:06}"),
            env.login(&format!("r{i}")),
            "ACTIVE",
        )
    };
    let groups = [
        (READERS_GROUP, 0..6000),
        (okta_rds_sync_tests::WRITERS_GROUP, 4000..8000),
        ("00gOPSopsOPS0h8", 7000..10_000),
    ];
    for (id, range) in groups.clone() {
        okta.set_members(id, &range.map(user).collect::<Vec<_>>())
            .await;
    }
    let toml = env.config_toml()
        + &format!(
            "\n[[grants]]\nokta_group = \"00gOPSopsOPS0h8\"\ntarget = \"main\"\nroles = [\"{}\"]\n",
            env.readonly_role
        );
    let config = okta_rds_sync::config::Config::parse(&toml, Path::new("bench.toml"))?;
    let creds = OktaCredentials {
        client_id: "0oaBENCH".into(),
        kid: "k".into(),
        private_key: private,
    };
    let client = OktaClient::new(&okta.url, &creds, &config.okta.scopes)?;
    let engine = okta_rds_sync_tests::worker_engine(&toml).await;
    for run in [
        "first run (creates 10,000 roles)",
        "second run (nothing to change)",
    ] {
        let started = Instant::now();
        let listing = okta_rds_sync::reconcile::fetch_listing(&client, &config).await?;
        let listed = started.elapsed();
        let report = engine.reconcile(&listing, false).await.remove(0)?;
        println!(
            "{:<44} {:>7.2} s  (listing {:.2} s, {} users, {} changes)",
            format!("reconcile 10k users / 3 groups: {run}"),
            started.elapsed().as_secs_f64(),
            listed.as_secs_f64(),
            report.users,
            report.changes
        );
    }
    Ok(())
}
