//! Nothing lost: database outages, an unreachable queue, password rotation mid-stream, and the retry
//! worker's handling of transient, permanent and poison messages. Real PostgreSQL (stopped and started for
//! real), moto's SQS and Secrets Manager over HTTP.
//!
//! This binary has its own cluster, which some tests stop: every test holds `SERVER` so none runs while
//! another has the server down.

use lambda_http::http::StatusCode;
use okta_hook::{HookApp, handle};
use okta_rds_sync_tests::okta::{User, body_json, delivery, event, post};
use okta_rds_sync_tests::{READERS_GROUP, TestEnv, create_queue, drain, sealed, servers, worker};
use serde_json::Value;
use tokio::sync::Mutex;

static SERVER: Mutex<()> = Mutex::const_new(());

const ADD: &str = "group.user_membership.add";
const REMOVE: &str = "group.user_membership.remove";
const READERS: (&str, &str) = (READERS_GROUP, "eng-prod-access");
const WRITERS: (&str, &str) = ("00g2wrtrsQRSTuvw0h8", "eng-prod-writers");
const USERS: usize = 10;

fn user(env: &TestEnv, i: usize) -> User {
    User::new(&format!("00uFAULT{i:03}"), &env.login(&format!("u{i}")))
}

fn logins() -> Vec<String> {
    (0..USERS).map(|i| format!("u{i}")).collect()
}

/// Every user joins readers (and half of them writers) while the database is up.
fn onboarding(env: &TestEnv) -> Vec<(String, Vec<Value>)> {
    (0..USERS)
        .map(|i| {
            let u = user(env, i);
            let mut events = vec![event(
                ADD,
                Some(&u),
                Some(READERS),
                1,
                &format!("pre-r-{i}"),
            )];
            if i.is_multiple_of(2) {
                events.push(event(
                    ADD,
                    Some(&u),
                    Some(WRITERS),
                    2,
                    &format!("pre-w-{i}"),
                ));
            }
            (format!("pre-{i}"), events)
        })
        .collect()
}

/// 50 deliveries of changes, offboardings among them, made while the database is down.
fn stream(env: &TestEnv) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for k in 0..50 {
        let i = k % USERS;
        let u = user(env, i);
        let t = 10 + k as u32;
        let e = match k / USERS {
            0 => event(REMOVE, Some(&u), Some(WRITERS), t, &format!("s{k}")),
            1 if i.is_multiple_of(3) => event(
                "user.lifecycle.deactivate",
                Some(&u),
                None,
                t,
                &format!("s{k}"),
            ),
            1 => event(ADD, Some(&u), Some(WRITERS), t, &format!("s{k}")),
            2 if i % 4 == 1 => event(
                "user.lifecycle.suspend",
                Some(&u),
                None,
                t,
                &format!("s{k}"),
            ),
            2 => event(ADD, Some(&u), Some(READERS), t, &format!("s{k}")),
            3 if i.is_multiple_of(3) => event(
                "user.lifecycle.activate",
                Some(&u),
                None,
                t,
                &format!("s{k}"),
            ),
            3 => event(REMOVE, Some(&u), Some(READERS), t, &format!("s{k}")),
            _ if i.is_multiple_of(2) => event(ADD, Some(&u), Some(READERS), t, &format!("s{k}")),
            _ => event(
                "user.lifecycle.deactivate",
                Some(&u),
                None,
                t,
                &format!("s{k}"),
            ),
        };
        out.push((format!("stream-{k}"), vec![e]));
    }
    out
}

async fn send(app: &HookApp, id: &str, events: Vec<Value>) -> (StatusCode, Value) {
    let response = handle(app, post(&delivery(id, events))).await;
    (response.status(), body_json(&response))
}

#[tokio::test]
async fn a_database_outage_loses_nothing() {
    let _server = SERVER.lock().await;
    let names = logins();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();

    // The same deliveries against a healthy database: the state to reach.
    let reference = TestEnv::new().await;
    let healthy = reference.app().await;
    for (id, events) in onboarding(&reference).into_iter().chain(stream(&reference)) {
        assert_eq!(send(&healthy, &id, events).await.0, StatusCode::OK);
    }
    let expected = reference.access(&names).await;
    assert!(expected.iter().any(|(_, r)| r.is_none()) && expected.iter().any(|(_, r)| r.is_some()));

    let env = TestEnv::new().await;
    let queue = create_queue(&format!("{}-retry", env.prefix)).await;
    let toml = env.config_with_queue(&queue);
    let app = env.app_from(&toml).await;
    for (id, events) in onboarding(&env) {
        assert_eq!(send(&app, &id, events).await.0, StatusCode::OK);
    }

    servers().pg_ctl("stop");
    let (mut sent, mut queued) = (0, 0);
    for (id, events) in stream(&env) {
        let (status, body) = send(&app, &id, events).await;
        sent += 1;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["queued"] == true {
            queued += 1;
        }
    }
    let worker = worker(&toml).await;
    let while_down = drain(&worker, &queue).await;
    servers().pg_ctl("start");
    // Messages the worker failed while the database was down come back after their visibility timeout.
    okta_rds_sync_tests::wait_for_redelivery().await;
    let after = drain(&worker, &queue).await;

    eprintln!(
        "outage: deliveries sent {sent}, answered 200 {sent}, queued {queued}, worker while down: {} failed; \
         after restart: {} received, {} applied, {} failed; lost {}",
        while_down.failed,
        after.received,
        after.applied,
        after.failed,
        sent - after.applied
    );
    assert_eq!((sent, queued), (50, 50));
    assert_eq!(
        while_down.applied, 0,
        "nothing applies while the database is down"
    );
    assert_eq!((after.applied, after.failed), (50, 0));
    assert_eq!(
        env.access(&names).await,
        expected,
        "same state as the healthy run"
    );
    assert_eq!(
        env.changes().await,
        reference.changes().await,
        "each change audited once"
    );
}

#[tokio::test]
async fn queue_unreachable_and_database_down_is_503_and_nothing_is_recorded() {
    let _server = SERVER.lock().await;
    let env = TestEnv::new().await;
    // A queue URL nobody listens on.
    let app = env
        .app_from(&env.config_with_queue("http://127.0.0.1:9/000000000000/nowhere"))
        .await;
    let u = user(&env, 0);
    let events = || vec![event(ADD, Some(&u), Some(READERS), 1, "a")];
    servers().pg_ctl("stop");
    let (status, body) = send(&app, "d1", events()).await;
    servers().pg_ctl("start");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["queued"], false);
    assert!(env.role(&env.login("u0")).await.is_none());
    // Okta's retry of the same delivery is applied in full: nothing was marked as seen.
    let (status, body) = send(&app, "d1", events()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["targets"][0]["duplicate_delivery"], false);
    assert!(env.role(&env.login("u0")).await.unwrap().can_login);
}

#[tokio::test]
async fn a_rotation_in_the_middle_of_a_stream_loses_nothing() {
    let _server = SERVER.lock().await;
    let mut env = TestEnv::new().await;
    let queue = create_queue(&format!("{}-retry", env.prefix)).await;
    let app = env.app_from(&env.config_with_queue(&queue)).await;
    let deliveries: Vec<(String, Vec<Value>)> =
        onboarding(&env).into_iter().chain(stream(&env)).collect();
    let (first, second) = deliveries.split_at(deliveries.len() / 2);
    for (id, events) in first {
        assert_eq!(send(&app, id, events.clone()).await.1["queued"], false);
    }
    env.rotate_master_password("rotated-mid-stream").await;
    env.drop_master_connections().await;
    for (id, events) in second {
        let (status, body) = send(&app, id, events.clone()).await;
        assert_eq!(
            (status, body["queued"].clone()),
            (StatusCode::OK, Value::Bool(false)),
            "{id}: {body}"
        );
    }
    let reference = TestEnv::new().await;
    let healthy = reference.app().await;
    for (id, events) in onboarding(&reference).into_iter().chain(stream(&reference)) {
        send(&healthy, &id, events).await;
    }
    let names = logins();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(env.access(&names).await, reference.access(&names).await);
}

#[tokio::test]
async fn the_worker_retries_transient_drops_permanent_and_leaves_poison_to_the_dlq() {
    let _server = SERVER.lock().await;
    let env = TestEnv::new().await;
    let queue = create_queue(&format!("{}-retry", env.prefix)).await;
    let sqs = okta_rds_sync_tests::sqs_client().await;
    let u = user(&env, 0);
    let good = sealed(
        "q1",
        chrono::Utc::now(),
        &delivery("q1", vec![event(ADD, Some(&u), Some(READERS), 1, "a")]),
    );
    for body in [good.encode(), "not a queued delivery".to_owned()] {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let healthy = worker(&env.config_toml()).await;
    let drained = drain(&healthy, &queue).await;
    assert_eq!(
        (drained.applied, drained.failed),
        (1, 1),
        "the poison message is failed, so it reaches the DLQ"
    );
    assert!(env.role(&env.login("u0")).await.unwrap().can_login);

    // A permanent failure (a privileged mapping refused at start) is not retried.
    let admin = format!("{}_admin", env.prefix);
    env.superuser()
        .await
        .batch_execute(&format!("CREATE ROLE {admin} NOLOGIN SUPERUSER"))
        .await
        .unwrap();
    let refused = format!(
        "{}\n[[grants]]\nokta_group = \"00gADM\"\ntarget = \"main\"\nroles = [\"{admin}\"]\n",
        env.config_toml()
    );
    let refusing = worker(&refused).await;
    let bad = sealed(
        "q2",
        chrono::Utc::now(),
        &delivery(
            "q2",
            vec![event(ADD, Some(&u), Some(("00gADM", "admins")), 2, "b")],
        ),
    );
    assert_eq!(
        refusing
            .handle_message(&bad.encode(), std::time::Duration::from_secs(10))
            .await,
        retry_worker::Disposition::Dropped
    );
}

/// Secrets Manager through a proxy that counts its requests: concurrent reads of one secret make one call,
/// and a forced refresh that began after a reader asked serves it (after a rotation every reader asks at
/// once: two calls, not one each).
#[tokio::test]
async fn concurrent_reads_of_a_secret_share_one_call() {
    let _server = SERVER.lock().await;
    let env = TestEnv::new().await;
    let moto_port: u16 = servers()
        .moto_url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("moto port");
    let proxy = okta_rds_sync_tests::proxy::CountingProxy::start(moto_port).await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{}", proxy.port))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "static",
        ))
        .load()
        .await;
    let secrets =
        okta_rds_sync::secrets::Secrets::new(&sdk, std::time::Duration::from_secs(300)).unwrap();
    let arn = &env.master_secret_arn;

    let reads = futures_util::future::join_all((0..8).map(|_| secrets.get(arn, false))).await;
    assert!(
        reads
            .iter()
            .all(|r| r.as_deref().ok() == reads[0].as_deref().ok())
    );
    assert!(reads[0].as_ref().unwrap().contains(&env.master));
    assert_eq!(proxy.round_trips(), 1, "eight first reads, one call");

    let refreshes = futures_util::future::join_all((0..8).map(|_| secrets.get(arn, true))).await;
    assert!(refreshes.iter().all(Result::is_ok));
    // The first refresh began before the others asked; the second began after all of them.
    assert_eq!(proxy.round_trips(), 3, "eight forced refreshes, two calls");
}
