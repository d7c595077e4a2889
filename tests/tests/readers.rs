//! Readers: sessions on a real streaming hot standby of the test cluster end with the offboarding, before
//! the delivery is answered; an unreachable reader does not hold the writer back, and the retry finishes
//! the job there.

use lambda_http::http::StatusCode;
use okta_hook::{HookApp, handle};
use okta_rds_sync_tests::okta::{User, body_json, delivery, event, post};
use okta_rds_sync_tests::proxy::CountingProxy;
use okta_rds_sync_tests::standby::standby;
use okta_rds_sync_tests::{
    READERS_GROUP, TestEnv, create_queue, drain, free_port_for_tests, servers, worker,
};
use serde_json::Value;
use tokio_postgres::Client;

const ADD: &str = "group.user_membership.add";
const DEACTIVATE: &str = "user.lifecycle.deactivate";

async fn send(app: &HookApp, id: &str, events: Vec<Value>) -> (StatusCode, Value) {
    let response = handle(app, post(&delivery(id, events))).await;
    (response.status(), body_json(&response))
}

fn reader_config(env: &TestEnv, readers: &[String], hook_extra: &str) -> String {
    let list: Vec<String> = readers.iter().map(|r| format!("{r:?}")).collect();
    env.config_with(hook_extra, &format!("readers = [{}]", list.join(", ")))
}

/// Onboard `u`, then hold a session as them on the primary and one on the standby.
async fn sessions_everywhere(env: &TestEnv, app: &HookApp, u: &User) -> (Client, Client) {
    let (status, _) = send(
        app,
        &format!("on-{}", u.id),
        vec![event(ADD, Some(u), Some((READERS_GROUP, "r")), 1, "on")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let on_primary = env.open_session_as(&u.login).await;
    // The password reaches the standby by replication: wait for it (bounded).
    let mut tries = 0;
    let on_standby = loop {
        standby().caught_up().await;
        match servers()
            .connect_to(standby().port, &env.database, &u.login, "session-pw")
            .await
        {
            Ok(client) => break client,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("standby login not ready yet: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("session on the standby: {e}"),
        }
    };
    on_standby
        .simple_query("SELECT 1")
        .await
        .expect("the standby session works");
    (on_primary, on_standby)
}

async fn sessions_on_standby(env: &TestEnv, role: &str) -> i64 {
    standby()
        .superuser(&env.database)
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn a_session_on_the_standby_is_gone_when_the_deactivation_is_answered() {
    let env = TestEnv::new().await;
    let reader = format!("localhost:{}", standby().port);
    let app = env.app_from(&reader_config(&env, &[reader], "")).await;
    let u = User::new("00uREADER0001", &env.login("jane"));
    let (on_primary, on_standby) = sessions_everywhere(&env, &app, &u).await;
    assert_eq!(sessions_on_standby(&env, &u.login).await, 1);

    let (status, body) = send(
        &app,
        "off",
        vec![event(DEACTIVATE, Some(&u), None, 2, "off")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["targets"][0]["sessions_terminated"], 2, "{body}");
    assert_eq!(sessions_on_standby(&env, &u.login).await, 0);
    assert!(on_standby.simple_query("SELECT 1").await.is_err());
    assert!(on_primary.simple_query("SELECT 1").await.is_err());
    let audit = env.audit().await;
    let kill = audit
        .iter()
        .find(|a| a.action == "terminate_sessions")
        .expect("audited");
    assert_eq!(
        (kill.outcome.as_str(), kill.detail.as_str()),
        ("applied", "2 terminated, 0 remaining")
    );
}

#[tokio::test]
async fn an_unreachable_reader_queues_the_delivery_and_the_retry_ends_its_sessions() {
    let env = TestEnv::new().await;
    let queue = create_queue(&format!("{}-retry", env.prefix)).await;
    let port = free_port_for_tests();
    let toml = reader_config(
        &env,
        &[format!("localhost:{port}")],
        &format!("retry_queue_url = \"{queue}\""),
    );
    let direct = reader_config(&env, &[format!("localhost:{}", standby().port)], "");
    let u = User::new("00uREADER0002", &env.login("joe"));
    let (on_primary, on_standby) =
        sessions_everywhere(&env, &env.app_from(&direct).await, &u).await;

    let app = env.app_from(&toml).await;
    let (status, body) = send(
        &app,
        "off",
        vec![event(DEACTIVATE, Some(&u), None, 2, "off")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["queued"], true, "{body}");
    // The writer did its part at once: the login is disabled and its session is gone.
    assert!(on_primary.simple_query("SELECT 1").await.is_err());
    assert!(!env.role(&u.login).await.expect("role").can_login);
    let audit = env.audit().await;
    let kill = audit
        .iter()
        .find(|a| a.action == "terminate_sessions")
        .expect("audited");
    assert_eq!(kill.outcome, "failed");
    let detail = &kill.detail;
    assert!(
        detail.contains(&format!("reader localhost:{port} not reached")),
        "{detail}"
    );
    // The standby's session lives on until the reader is reachable and the queued delivery retried.
    on_standby
        .simple_query("SELECT 1")
        .await
        .expect("still alive");
    let _proxy = CountingProxy::start_on(port, standby().port).await;
    let drained = drain(&worker(&toml).await, &queue).await;
    assert_eq!((drained.received, drained.failed), (1, 0));
    assert_eq!(sessions_on_standby(&env, &u.login).await, 0);
    assert!(on_standby.simple_query("SELECT 1").await.is_err());
}

/// An instance with two read replicas, and an Aurora cluster with a writer and a reader, in moto's RDS.
async fn rds_fleet(prefix: &str) -> aws_sdk_rds::Client {
    let rds = aws_sdk_rds::Client::new(&okta_rds_sync_tests::sdk_config().await);
    rds.create_db_instance()
        .db_instance_identifier(format!("{prefix}-primary"))
        .engine("postgres")
        .db_instance_class("db.t4g.micro")
        .allocated_storage(20)
        .master_username("postgres")
        .master_user_password("not-used-here")
        .send()
        .await
        .expect("primary");
    for i in 1..=2 {
        rds.create_db_instance_read_replica()
            .db_instance_identifier(format!("{prefix}-replica-{i}"))
            .source_db_instance_identifier(format!("{prefix}-primary"))
            .send()
            .await
            .expect("replica");
    }
    rds.create_db_cluster()
        .db_cluster_identifier(format!("{prefix}-aurora"))
        .engine("aurora-postgresql")
        .master_username("postgres")
        .master_user_password("not-used-here")
        .send()
        .await
        .expect("cluster");
    for role in ["writer", "reader"] {
        rds.create_db_instance()
            .db_instance_identifier(format!("{prefix}-aurora-{role}"))
            .db_cluster_identifier(format!("{prefix}-aurora"))
            .engine("aurora-postgresql")
            .db_instance_class("db.r6g.large")
            .send()
            .await
            .expect("cluster instance");
    }
    rds
}

async fn endpoint_of(rds: &aws_sdk_rds::Client, id: &str) -> (String, u16) {
    let out = rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .expect("describe");
    let e = out.db_instances()[0].endpoint().expect("endpoint");
    (
        e.address().expect("address").to_owned(),
        u16::try_from(e.port().expect("port")).expect("port"),
    )
}

#[tokio::test]
async fn discovery_finds_an_instances_replicas_and_a_clusters_readers_through_the_rds_api() {
    use okta_rds_sync::db::discovery::{Discovery, Source};
    let rds = rds_fleet("disc").await;
    let replicas = {
        let mut r = vec![
            endpoint_of(&rds, "disc-replica-1").await,
            endpoint_of(&rds, "disc-replica-2").await,
        ];
        r.sort();
        r
    };
    let reader = vec![endpoint_of(&rds, "disc-aurora-reader").await];
    for (source, expected) in [
        (Source::Instance("disc-primary".into()), &replicas),
        (Source::Either("disc-primary".into()), &replicas),
        (Source::Cluster("disc-aurora".into()), &reader),
        (Source::Either("disc-aurora".into()), &reader),
    ] {
        let mut discovery = Discovery::new(rds.clone(), source.clone());
        assert_eq!(
            &discovery.readers().await.expect("discovered"),
            expected,
            "{source:?}"
        );
    }
    // An answer is cached: a replica added now shows up after the TTL, not before.
    let mut discovery = Discovery::new(rds.clone(), Source::Instance("disc-primary".into()));
    discovery.readers().await.expect("first");
    rds.create_db_instance_read_replica()
        .db_instance_identifier("disc-replica-3")
        .source_db_instance_identifier("disc-primary")
        .send()
        .await
        .expect("replica 3");
    assert_eq!(discovery.readers().await.expect("cached"), replicas);
    let unknown = Discovery::new(rds.clone(), Source::Cluster("nope".into()))
        .readers()
        .await;
    assert!(unknown.is_err());
}

#[tokio::test]
async fn discovered_readers_are_tried_on_offboarding_and_one_out_of_reach_queues_the_delivery() {
    let env = TestEnv::new().await;
    let rds = rds_fleet("hook").await;
    let (replica_host, replica_port) = endpoint_of(&rds, "hook-replica-1").await;
    let queue = create_queue(&format!("{}-retry", env.prefix)).await;
    let toml = env.config_with(
        &format!("retry_queue_url = \"{queue}\""),
        "discover_readers = true\nrds_identifier = \"hook-primary\"\nconnect_timeout_ms = 500",
    );
    let app = env.app_from(&toml).await;
    let u = User::new("00uREADER0003", &env.login("ann"));
    send(
        &app,
        "on",
        vec![event(ADD, Some(&u), Some((READERS_GROUP, "r")), 1, "on")],
    )
    .await;
    let (status, body) = send(
        &app,
        "off",
        vec![event(DEACTIVATE, Some(&u), None, 2, "off")],
    )
    .await;
    assert_eq!(
        (status, &body["queued"]),
        (StatusCode::OK, &Value::Bool(true)),
        "{body}"
    );
    let audit = env.audit().await;
    let kill = audit
        .iter()
        .find(|a| a.action == "terminate_sessions")
        .expect("audited");
    assert!(
        kill.detail
            .contains(&format!("reader {replica_host}:{replica_port} not reached")),
        "{}",
        kill.detail
    );
}
