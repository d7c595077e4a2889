//! `make bench`: measure the release okta-hook binary through the Lambda Runtime API emulator against the
//! throwaway TLS PostgreSQL and moto.
//!
//! - cold start: process start to the first answered invocation (the verification GET, which reads the
//!   hook secret from Secrets Manager), and to the first applied delivery (adds TLS connect + bootstrap);
//! - warm latency of deliveries of 1, 10 and 100 events (each event onboards a new user: CREATE ROLE,
//!   marker, comment, two grants, LOGIN; and the same users offboarded: NOLOGIN, revokes, session check);
//! - peak RSS (VmHWM) of the warm process.
//!
//! Usage: bench [path/to/okta-hook] [iterations]

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use okta_rds_sync_tests::okta::{User, delivery, event, request_event_json, sample};
use okta_rds_sync_tests::runtime::RuntimeApi;
use okta_rds_sync_tests::{READERS_GROUP, TestEnv, function_binary, function_env, servers};

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<44} n={:<3} min {:>7.2} ms  p50 {:>7.2} ms  p95 {:>7.2} ms  max {:>7.2} ms",
        samples.len(),
        ms(samples[0]),
        ms(pick(0.5)),
        ms(pick(0.95)),
        ms(samples[samples.len() - 1])
    );
}

async fn invoke_ok(api: &RuntimeApi, body: String) -> Duration {
    let start = Instant::now();
    let answer = api
        .invoke(Bytes::from(body), Duration::from_secs(30))
        .await
        .expect("invoke");
    let took = start.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("\"statusCode\":200"),
        "unexpected answer: {text}"
    );
    took
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A reconcile of 10,000 users in 3 groups: Okta listing (local emulator, 200 a page, DPoP) and
/// convergence in PostgreSQL, first creating every role, then with nothing to change.
async fn reconcile_bench(env: &TestEnv) -> Result<(), Box<dyn std::error::Error>> {
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let binary = function_binary("release")?;
    let iterations: usize = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let s = servers();
    let env = TestEnv::named("bench").await;
    let config = s.dir.join("bench-config.toml");
    std::fs::write(&config, env.config_toml())?;
    println!(
        "okta-hook benchmark: {} ({} bytes)",
        binary.display(),
        std::fs::metadata(&binary)?.len()
    );
    println!(
        "PostgreSQL localhost:{} over TLS (SCRAM), Secrets Manager = moto {}\n",
        s.pg_port, s.moto_url
    );

    // Cold starts: a new process per sample.
    let mut to_challenge = Vec::new();
    let mut to_delivery = Vec::new();
    for i in 0..iterations {
        let api = RuntimeApi::start().await?;
        let started = Instant::now();
        let mut child = api.spawn_function(&binary, &function_env(&config, "warn"), None)?;
        let answer = api
            .invoke(Bytes::from(sample("challenge")), Duration::from_secs(30))
            .await?;
        to_challenge.push(started.elapsed());
        assert!(String::from_utf8_lossy(&answer).contains("\"statusCode\":200"));
        let u = User::new(&format!("00uCOLD{i:05}"), &env.login(&format!("cold{i}")));
        let body = request_event_json(&delivery(
            &format!("cold-{i}"),
            vec![event(
                "group.user_membership.add",
                Some(&u),
                Some((READERS_GROUP, "r")),
                1,
                &format!("cold-{i}"),
            )],
        ));
        invoke_ok(&api, body).await;
        to_delivery.push(started.elapsed());
        child.kill()?;
        child.wait()?;
    }
    stats("cold start -> first answer (challenge GET)", to_challenge);
    stats("cold start -> first delivery applied", to_delivery);

    // Warm: one process, many deliveries.
    let api = RuntimeApi::start().await?;
    let mut child = api.spawn_function(&binary, &function_env(&config, "warn"), None)?;
    invoke_ok(&api, sample("challenge")).await;
    let mut users_by_size = Vec::new();
    for size in [1usize, 10, 100] {
        let mut samples = Vec::new();
        let mut all_users = Vec::new();
        for it in 0..iterations {
            let users: Vec<User> = (0..size)
                .map(|j| {
                    User::new(
                        &format!("00uW{size}x{it}x{j}"),
                        &env.login(&format!("w{size}.{it}.{j}")),
                    )
                })
                .collect();
            let events = users
                .iter()
                .enumerate()
                .map(|(j, u)| {
                    event(
                        "group.user_membership.add",
                        Some(u),
                        Some((READERS_GROUP, "r")),
                        10,
                        &format!("on-{size}-{it}-{j}"),
                    )
                })
                .collect();
            samples.push(
                invoke_ok(
                    &api,
                    request_event_json(&delivery(&format!("on-{size}-{it}"), events)),
                )
                .await,
            );
            all_users.push(users);
        }
        stats(&format!("warm: {size}-event delivery, onboarding"), samples);
        users_by_size.push((size, all_users));
    }
    for (size, batches) in &users_by_size {
        let mut samples = Vec::new();
        for (it, users) in batches.iter().enumerate() {
            let events = users
                .iter()
                .enumerate()
                .map(|(j, u)| {
                    event(
                        "user.lifecycle.deactivate",
                        Some(u),
                        None,
                        20,
                        &format!("off-{size}-{it}-{j}"),
                    )
                })
                .collect();
            samples.push(
                invoke_ok(
                    &api,
                    request_event_json(&delivery(&format!("off-{size}-{it}"), events)),
                )
                .await,
            );
        }
        stats(
            &format!("warm: {size}-event delivery, offboarding"),
            samples,
        );
    }
    let mut dup = Vec::new();
    for it in 0..iterations {
        dup.push(
            invoke_ok(
                &api,
                request_event_json(&delivery(&format!("on-100-{}", it % iterations), vec![])),
            )
            .await,
        );
    }
    stats("warm: duplicate delivery (already seen)", dup);
    let rss = peak_rss_kib(child.id());
    child.kill()?;
    child.wait()?;
    reconcile_bench(&env).await?;
    match rss {
        Some(kib) => println!(
            "{:<44} {:.1} MiB",
            "peak RSS (VmHWM) of the warm process",
            kib as f64 / 1024.0
        ),
        None => println!("peak RSS: unavailable (no /proc)"),
    }
    Ok(())
}
