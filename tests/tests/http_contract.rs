//! The HTTP contract of okta-hook (DESIGN.md), driven with the samples in `events/` and hand-built
//! requests, against real PostgreSQL (TLS, SCRAM) and moto's Secrets Manager.

use lambda_http::http::StatusCode;
use okta_hook::handle;
use okta_rds_sync_tests::okta::{
    User, body_json, delivery, event, from_sample, post, request, sample,
};
use okta_rds_sync_tests::{DEMO_SECRET, READERS_GROUP, TestEnv, set};

/// The warm-up that `main` spawns at cold start connects as the master and bootstraps the target before
/// any delivery arrives.
#[tokio::test]
async fn the_warm_up_connects_and_bootstraps_before_the_first_delivery() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let master_sessions = || async {
        env.superuser()
            .await
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND application_name = 'okta-rds-sync'",
                &[&env.master],
            )
            .await
            .expect("count")
            .get::<_, i64>(0)
    };
    assert_eq!(master_sessions().await, 0);
    app.warm_up().await;
    assert_eq!(master_sessions().await, 1);
    let schema: Option<String> = env
        .superuser()
        .await
        .query_one("SELECT to_regnamespace('okta_rds_sync')::text", &[])
        .await
        .expect("schema")
        .get(0);
    assert_eq!(schema.as_deref(), Some("okta_rds_sync"));
    // The first delivery uses that connection: still one session.
    let u = User::new("00uWARMUP0001", &env.login("warm"));
    let response = handle(
        &app,
        post(&delivery(
            "d1",
            vec![event(
                "group.user_membership.add",
                Some(&u),
                Some((READERS_GROUP, "r")),
                1,
                "a",
            )],
        )),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(master_sessions().await, 1);
}

#[tokio::test]
async fn verification_challenge_is_echoed_in_json() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    // The sample spells the header X-Okta-Verification-Challenge: lookup must ignore case.
    let response = handle(&app, from_sample(&sample("challenge"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        body_json(&response),
        serde_json::json!({ "verification": "kCrDs2Rc8WUbS4Y0wD0_kYgJ3ZnVbmSxRb5Yt-x7" })
    );

    let no_challenge = request("GET", &[("authorization", DEMO_SECRET)], None);
    assert_eq!(
        handle(&app, no_challenge).await.status(),
        StatusCode::BAD_REQUEST
    );
    // The challenge is only answered to an authenticated caller.
    let unauthenticated = request("GET", &[("x-okta-verification-challenge", "abc")], None);
    assert_eq!(
        handle(&app, unauthenticated).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn bad_authentication_is_401_and_records_nothing() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let body = env.localize(&sample("01-group-membership-add"));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let okta_body = body["body"].as_str().unwrap();
    let truncated = &DEMO_SECRET[..DEMO_SECRET.len() - 1];
    let extended = format!("{DEMO_SECRET}x");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("authorization", "")],
        vec![("authorization", "Bearer wrong-secret")],
        vec![("authorization", truncated)],
        vec![("authorization", &extended)],
        vec![("x-other-header", DEMO_SECRET)],
    ];
    for headers in cases {
        let response = handle(&app, request("POST", &headers, Some(okta_body))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
        let text = format!("{:?}", response.body());
        assert!(
            !text.contains("okta-rds-sync-demo-secret"),
            "error body must not echo the secret"
        );
    }
    for sample_name in ["bad-auth", "missing-auth"] {
        let response = handle(&app, from_sample(&env.localize(&sample(sample_name)))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{sample_name}");
    }
    assert!(env.role(&env.login("jane.doe")).await.is_none());
    assert!(
        env.audit().await.is_empty(),
        "nothing recorded (the state schema may not even exist yet)"
    );
}

#[tokio::test]
async fn header_name_is_configurable_and_case_insensitive() {
    let env = TestEnv::new().await;
    let app = env
        .app_from(&env.config_with("header = \"X-Okta-Secret\"", ""))
        .await;
    let ok = request(
        "GET",
        &[
            ("x-okta-secret", DEMO_SECRET),
            ("x-okta-verification-challenge", "v1"),
        ],
        None,
    );
    assert_eq!(handle(&app, ok).await.status(), StatusCode::OK);
    let wrong_header = request(
        "GET",
        &[
            ("authorization", DEMO_SECRET),
            ("x-okta-verification-challenge", "v1"),
        ],
        None,
    );
    assert_eq!(
        handle(&app, wrong_header).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn rotation_accepts_the_current_and_the_previous_secret() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let challenge = |secret: &'static str| {
        request(
            "GET",
            &[
                ("authorization", secret),
                ("x-okta-verification-challenge", "c"),
            ],
            None,
        )
    };
    assert_eq!(
        handle(&app, challenge(DEMO_SECRET)).await.status(),
        StatusCode::OK
    );
    // The operator rotates: new current secret, old one kept as previous until Okta is updated.
    let rotated =
        serde_json::json!({ "current": "Bearer new-secret", "previous": DEMO_SECRET }).to_string();
    env.sm
        .put_secret_value()
        .secret_id(&env.hook_secret_arn)
        .secret_string(rotated)
        .send()
        .await
        .unwrap();
    // The cached secret does not know the new value: a mismatch forces one re-read.
    assert_eq!(
        handle(&app, challenge("Bearer new-secret")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        handle(&app, challenge(DEMO_SECRET)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        handle(&app, challenge("Bearer other")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn other_methods_are_405() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let response = handle(&app, from_sample(&sample("wrong-method"))).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "GET, POST");
    for method in ["DELETE", "PATCH", "HEAD", "OPTIONS"] {
        let r = handle(
            &app,
            request(method, &[("authorization", DEMO_SECRET)], None),
        )
        .await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

#[tokio::test]
async fn bad_bodies_are_400_or_413_and_change_nothing() {
    let env = TestEnv::new().await;
    let app = env
        .app_from(&env.config_with("max_body_bytes = 4096", ""))
        .await;
    for name in ["malformed-body", "not-okta-body"] {
        let response = handle(&app, from_sample(&sample(name))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        assert!(
            body_json(&response)["error"]
                .as_str()
                .unwrap()
                .contains("not")
        );
    }
    for body in [
        "",
        "null",
        "[]",
        "\"x\"",
        "{}",
        "{\"eventType\":\"com.okta.event_hook\",\"eventId\":\"x\"}",
    ] {
        assert_eq!(
            handle(&app, post(body)).await.status(),
            StatusCode::BAD_REQUEST,
            "{body:?}"
        );
    }
    let jane = User::new("00u7jdoeAbCdEf0h8", &env.login("jane"));
    let mut events = Vec::new();
    for i in 0..40 {
        events.push(event(
            "group.user_membership.add",
            Some(&jane),
            Some((READERS_GROUP, "r")),
            i,
            &format!("big-{i}"),
        ));
    }
    let big = delivery("big-delivery", events);
    assert!(big.len() > 4096);
    assert_eq!(
        handle(&app, post(&big)).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert!(env.role(&env.login("jane")).await.is_none());
    assert!(env.audit().await.is_empty());
}

#[tokio::test]
async fn sample_story_converges_step_by_step() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let post_sample = |name: &str| from_sample(&env.localize(&sample(name)));
    let (jane, jane_renamed, bob) = (
        env.login("jane.doe"),
        env.login("jane.roe"),
        env.login("bob.smith"),
    );
    let (ro, rw) = (env.readonly_role.clone(), env.readwrite_role.clone());

    let response = handle(&app, post_sample("01-group-membership-add")).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    let summary = body_json(&response);
    assert_eq!(summary["events"], 1);
    assert_eq!(summary["targets"][0]["changes"], 4, "{summary}");
    let role = env.role(&jane).await.expect("jane's role");
    assert!(role.can_login);
    assert_eq!(role.member_of, set(&[&env.marker_role, "rds_iam", &ro]));
    assert_eq!(
        role.comment.as_deref(),
        Some("okta-rds-sync:00u7jdoeAbCdEf0h8")
    );

    // A batch: bob joins writers (group target listed first) and readers, jane joins writers; one event is
    // an unhandled type and is counted, not applied.
    let summary = body_json(&handle(&app, post_sample("02-batch")).await);
    assert_eq!(
        (summary["events"].as_u64(), summary["ignored"].as_u64()),
        (Some(3), Some(1)),
        "{summary}"
    );
    assert_eq!(env.role(&bob).await.unwrap().member_of.len(), 4);
    assert!(env.role(&jane).await.unwrap().member_of.contains(&rw));

    handle(&app, post_sample("03-user-suspend")).await;
    let suspended = env.role(&bob).await.unwrap();
    assert!(!suspended.can_login);
    assert_eq!(suspended.member_of, set(&[&env.marker_role]));
    handle(&app, post_sample("04-user-unsuspend")).await;
    assert!(env.role(&bob).await.unwrap().can_login);
    assert_eq!(env.role(&bob).await.unwrap().member_of.len(), 4);

    handle(&app, post_sample("05-user-update-profile")).await;
    assert!(env.role(&jane).await.is_none(), "old name is gone");
    let renamed = env.role(&jane_renamed).await.expect("renamed role");
    assert!(renamed.can_login && renamed.member_of.contains(&rw));

    handle(&app, post_sample("06-group-membership-remove")).await;
    let after = env.role(&jane_renamed).await.unwrap();
    assert!(after.can_login, "still in the readers group");
    assert_eq!(after.member_of, set(&[&env.marker_role, "rds_iam", &ro]));

    handle(&app, post_sample("07-user-deactivate")).await;
    assert!(!env.role(&bob).await.unwrap().can_login);
    handle(&app, post_sample("08-user-activate")).await;
    assert!(env.role(&bob).await.unwrap().can_login);

    handle(&app, post_sample("09-group-delete")).await;
    let bob_role = env.role(&bob).await.unwrap();
    assert!(
        !bob_role.member_of.contains(&rw) && bob_role.member_of.contains(&ro),
        "writers group is gone"
    );

    handle(&app, post_sample("10-user-deactivate-jane")).await;
    handle(&app, post_sample("11-user-delete-initiated")).await;
    let gone = env
        .role(&jane_renamed)
        .await
        .expect("role kept (owned objects survive)");
    assert!(!gone.can_login);
    assert_eq!(gone.member_of, set(&[&env.marker_role]));

    // Replaying the whole story changes nothing.
    let before = env.audit().await.len();
    for name in [
        "01-group-membership-add",
        "02-batch",
        "03-user-suspend",
        "04-user-unsuspend",
        "05-user-update-profile",
        "06-group-membership-remove",
        "07-user-deactivate",
        "08-user-activate",
        "09-group-delete",
        "10-user-deactivate-jane",
        "11-user-delete-initiated",
    ] {
        let s = body_json(&handle(&app, post_sample(name)).await);
        assert_eq!(s["targets"][0]["duplicate_delivery"], true, "{name}");
    }
    assert_eq!(env.audit().await.len(), before);
    let audit = env.audit().await;
    assert!(audit.iter().all(|a| a.outcome == "applied"), "{audit:#?}");
    assert!(
        audit
            .iter()
            .any(|a| a.action == "rename_role" && a.detail.contains("jane.roe"))
    );
    let anonymous: Vec<_> = audit
        .iter()
        .filter(|a| !a.actor.starts_with("it.admin@") || a.event_uuids.is_empty())
        .collect();
    assert!(anonymous.is_empty(), "{anonymous:#?}");
}

/// Fuzz the handler: arbitrary bytes and Okta deliveries with hostile values at every field the parser
/// reads. No panic, and never a 5xx: bad input is a 4xx, good input is applied (real database).
#[test]
fn fuzzed_requests_never_panic_or_answer_5xx() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (env, app) = rt.block_on(async {
        let env = TestEnv::new().await;
        let app = env.app().await;
        (env, app)
    });
    let hostile = "[a-zA-Z0-9\\u{0}'\";@.é🚀 -]{0,70}";
    let paths = prop::sample::select(vec![
        "/eventId",
        "/eventType",
        "/data/events/0/uuid",
        "/data/events/0/published",
        "/data/events/0/eventType",
        "/data/events/0/outcome/result",
        "/data/events/0/actor/alternateId",
        "/data/events/0/target/0/id",
        "/data/events/0/target/0/alternateId",
        "/data/events/0/target/0/type",
        "/data/events/0/target/1/id",
        "/data/events/0/target/1/displayName",
    ]);
    let mutated = (paths, hostile, any::<u16>()).prop_map(|(path, value, n)| {
        let u = User::new(&format!("00uFUZZ{n}"), &format!("fuzz{n}@x.acme.com"));
        let mut v: serde_json::Value = serde_json::from_str(&delivery(
            &format!("fuzz-{n}"),
            vec![event(
                "group.user_membership.add",
                Some(&u),
                Some((READERS_GROUP, "r")),
                1,
                &format!("f{n}"),
            )],
        ))
        .unwrap();
        if let Some(slot) = v.pointer_mut(path) {
            *slot = serde_json::Value::String(value);
        }
        v.to_string()
    });
    let bodies = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "\\PC{0,200}",
        mutated,
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    });
    runner
        .run(&bodies, |body| {
            let response = rt.block_on(handle(&app, post(&body)));
            prop_assert!(
                !response.status().is_server_error(),
                "{} for {body:?}: {:?}",
                response.status(),
                response.body()
            );
            Ok(())
        })
        .unwrap();
    drop(env);
}
