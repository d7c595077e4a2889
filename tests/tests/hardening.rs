//! okta-rds-sync against its own data plane: what an ordinary database login, an Okta admin, a holder of
//! the hook secret or a writer to the queue could make it do with the master credentials. Each test is an
//! attack that worked before the hardening (issue 8). Real PostgreSQL over TLS, moto, a local Okta.

use jsonwebtoken::Algorithm;
use lambda_http::http::StatusCode;
use okta_hook::{HookApp, handle};
use okta_rds_sync::okta_api::{OktaClient, OktaCredentials};
use okta_rds_sync::reconcile::{ReconcileReport, fetch_listing};
use okta_rds_sync_tests::okta::{User, body_json, delivery, event, post};
use okta_rds_sync_tests::okta_server::OktaServer;
use okta_rds_sync_tests::{
    READERS_GROUP, TestEnv, WRITERS_GROUP, okta_keypair, servers, set, worker_engine,
};
use serde_json::Value;

const ADD: &str = "group.user_membership.add";
const REMOVE: &str = "group.user_membership.remove";
const READERS: (&str, &str) = (READERS_GROUP, "eng-prod-access");
const WRITERS: (&str, &str) = (WRITERS_GROUP, "eng-prod-writers");

async fn send(app: &HookApp, id: &str, events: Vec<Value>) -> Value {
    let response = handle(app, post(&delivery(id, events))).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    body_json(&response)
}

/// A local Okta whose mapped groups list `members`, and a client for it.
async fn okta_listing(members: &[(&User, &'static str)]) -> (OktaServer, OktaClient) {
    let (private, public) = okta_keypair("ec");
    let okta = OktaServer::start("0oaHARDEN", &public, Algorithm::ES256).await;
    let listed: Vec<(String, String, &str)> = members
        .iter()
        .map(|(u, status)| (u.id.clone(), u.login.clone(), *status))
        .collect();
    okta.set_members(READERS_GROUP, &listed).await;
    okta.set_members(WRITERS_GROUP, &[]).await;
    let creds = OktaCredentials {
        client_id: "0oaHARDEN".into(),
        kid: "k1".into(),
        private_key: private,
    };
    let client = OktaClient::new(&okta.url, &creds, "okta.groups.read").unwrap();
    (okta, client)
}

async fn reconcile(toml: &str, client: &OktaClient, dry_run: bool) -> ReconcileReport {
    let config =
        okta_rds_sync::config::Config::parse(toml, std::path::Path::new("t.toml")).unwrap();
    let listing = fetch_listing(client, &config).await.unwrap();
    let engine = worker_engine(toml).await;
    let mut reports = engine.reconcile(&listing, dry_run).await;
    reports.remove(0).unwrap()
}

/// What an ordinary login with CREATE on `public` (the default before PostgreSQL 15, and on databases
/// upgraded from 14) plants: overloads of every function the project's SQL calls, each more specific than
/// `pg_catalog`'s polymorphic or `any` versions, plus an operator on `(name, text)`. Each records that it
/// ran, and as whom, and tries to grant its owner a mapped role.
fn planted(mallory: &str, role_to_steal: &str) -> String {
    let mut sql = format!(
        "CREATE TABLE public.pwned (who text, via text);
         GRANT INSERT, SELECT ON public.pwned TO PUBLIC;
         CREATE FUNCTION public.note(via text) RETURNS void LANGUAGE plpgsql AS $f$
         BEGIN
           INSERT INTO public.pwned VALUES (current_user, via);
           BEGIN EXECUTE pg_catalog.format('GRANT %I TO %I', '{role_to_steal}', '{mallory}');
           EXCEPTION WHEN others THEN NULL; END;
         END $f$;
         CREATE FUNCTION public.name_eq_text(a name, b text) RETURNS boolean LANGUAGE plpgsql AS $f$
         BEGIN PERFORM public.note('=(name,text)'); RETURN a::text OPERATOR(pg_catalog.=) b; END $f$;
         CREATE OPERATOR public.= (LEFTARG = name, RIGHTARG = text, FUNCTION = public.name_eq_text);
         CREATE FUNCTION public.count_sfunc(s bigint, v anyelement) RETURNS bigint LANGUAGE plpgsql AS $f$
         BEGIN PERFORM public.note('count'); RETURN s + 1; END $f$;
         CREATE AGGREGATE public.count(text) (SFUNC = public.count_sfunc, STYPE = bigint, INITCOND = '0');
         CREATE AGGREGATE public.count(bigint) (SFUNC = public.count_sfunc, STYPE = bigint, INITCOND = '0');
         CREATE AGGREGATE public.count(integer) (SFUNC = public.count_sfunc, STYPE = bigint, INITCOND = '0');"
    );
    for t in [
        "text",
        "timestamptz",
        "boolean",
        "double precision",
        "bigint",
        "name",
    ] {
        sql.push_str(&format!(
            "CREATE FUNCTION public.unnest(a {t}[]) RETURNS SETOF {t} LANGUAGE plpgsql AS $f$
             BEGIN PERFORM public.note('unnest({t}[])'); RETURN QUERY SELECT * FROM pg_catalog.unnest(a); END $f$;"
        ));
    }
    for (signature, returns, body) in [
        (
            "string_to_array(a text, b text)",
            "text[]",
            "pg_catalog.string_to_array(a, b)",
        ),
        (
            "string_to_array(a character varying, b text)",
            "text[]",
            "pg_catalog.string_to_array(a, b)",
        ),
        ("now()", "timestamptz", "pg_catalog.now()"),
        (
            "clock_timestamp()",
            "timestamptz",
            "pg_catalog.clock_timestamp()",
        ),
        (
            "current_setting(a text)",
            "text",
            "pg_catalog.current_setting(a)",
        ),
        (
            "hashtextextended(a text, b bigint)",
            "bigint",
            "pg_catalog.hashtextextended(a, b)",
        ),
        (
            "pg_has_role(a name, b oid, c text)",
            "boolean",
            "pg_catalog.pg_has_role(a, b, c)",
        ),
        (
            "shobj_description(a oid, b name)",
            "text",
            "pg_catalog.shobj_description(a, b)",
        ),
        ("pg_backend_pid()", "integer", "pg_catalog.pg_backend_pid()"),
        (
            "pg_terminate_backend(a integer, b bigint)",
            "boolean",
            "pg_catalog.pg_terminate_backend(a, b)",
        ),
        (
            "array_to_string(a text[], b text)",
            "text",
            "pg_catalog.array_to_string(a, b)",
        ),
    ] {
        let name = signature.split('(').next().unwrap_or(signature);
        sql.push_str(&format!(
            "CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE plpgsql AS $f$
             BEGIN PERFORM public.note('{name}'); RETURN {body}; END $f$;"
        ));
    }
    sql
}

#[tokio::test]
async fn objects_planted_in_public_never_run_as_the_master() {
    let env = TestEnv::new().await;
    let mallory = format!("{}_mallory", env.prefix);
    let su = env.superuser().await;
    su.batch_execute(&format!(
        "CREATE ROLE {mallory} LOGIN PASSWORD 'mallory-pw';
         GRANT CREATE, USAGE ON SCHEMA public TO PUBLIC;"
    ))
    .await
    .unwrap();
    let m = servers()
        .connect(&env.database, &mallory, "mallory-pw")
        .await
        .unwrap();
    m.batch_execute(&planted(&mallory, &env.readwrite_role))
        .await
        .expect("an ordinary login can plant these");

    // Deliveries of every kind, the first one bootstrapping the target.
    let app = env.app().await;
    let [ann, ben] = ["ann", "ben"].map(|n| User::new(&format!("00u{n}0hijack"), &env.login(n)));
    send(
        &app,
        "d1",
        vec![
            event(ADD, Some(&ann), Some(READERS), 1, "e1"),
            event(ADD, Some(&ben), Some(READERS), 2, "e2"),
            event(ADD, Some(&ben), Some(WRITERS), 3, "e3"),
        ],
    )
    .await;
    let session = env.open_session_as(&env.login("ben")).await;
    send(
        &app,
        "d2",
        vec![
            event(REMOVE, Some(&ben), Some(WRITERS), 4, "e4"),
            event("user.lifecycle.deactivate", Some(&ann), None, 5, "e5"),
            event("group.lifecycle.delete", None, Some(WRITERS), 6, "e6"),
        ],
    )
    .await;
    assert!(session.simple_query("SELECT 1").await.is_err());
    send(&app, "d2", vec![]).await;

    // The reconcile, its dry run and its drift check.
    let (_okta, client) = okta_listing(&[(&ann, "ACTIVE"), (&ben, "DEPROVISIONED")]).await;
    let toml = env.config_toml();
    reconcile(&toml, &client, true).await;
    reconcile(&toml, &client, false).await;

    let pwned = m
        .query("SELECT who, via FROM public.pwned", &[])
        .await
        .unwrap();
    let calls: Vec<(String, String)> = pwned.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(calls.is_empty(), "planted objects ran: {calls:?}");
    let stolen = env.role(&mallory).await.unwrap();
    assert!(!stolen.member_of.contains(&env.readwrite_role));
    assert_eq!(
        env.role(&env.login("ann")).await.unwrap().member_of,
        set(&[&env.marker_role, "rds_iam", &env.readonly_role]),
        "the reconcile still converged ann"
    );
}

#[tokio::test]
async fn a_state_schema_created_by_someone_else_is_refused() {
    let env = TestEnv::new().await;
    let mallory = format!("{}_mallory", env.prefix);
    let su = env.superuser().await;
    su.batch_execute(&format!(
        "CREATE ROLE {mallory} LOGIN PASSWORD 'mallory-pw';
         GRANT CREATE ON DATABASE {} TO {mallory};",
        env.database
    ))
    .await
    .unwrap();
    let m = servers()
        .connect(&env.database, &mallory, "mallory-pw")
        .await
        .unwrap();
    // Before the first run: a schema of the default name, with a table the master would write to.
    m.batch_execute(
        "CREATE SCHEMA okta_rds_sync; GRANT USAGE, CREATE ON SCHEMA okta_rds_sync TO PUBLIC;",
    )
    .await
    .unwrap();
    let app = env.app().await;
    let u = User::new("00uSCHEMA01", &env.login("ann"));
    // Twice: a refused bootstrap must not leave a connection that the next delivery trusts unchecked.
    for id in ["d1", "d2"] {
        let response = handle(
            &app,
            post(&delivery(
                id,
                vec![event(ADD, Some(&u), Some(READERS), 1, &format!("e-{id}"))],
            )),
        )
        .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{id}");
        assert_eq!(
            body_json(&response)["targets"][0]["error"],
            "failed",
            "{id}"
        );
        assert!(env.role(&env.login("ann")).await.is_none(), "{id}");
    }
    let tables = m
        .query(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'okta_rds_sync'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        tables[0].get::<_, i64>(0),
        0,
        "nothing is created in a schema someone else owns"
    );
}

#[tokio::test]
async fn a_group_named_like_a_mapped_group_id_grants_nothing() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00uIMPOSTOR1", &env.login("mallory"));
    // Anyone who can create or rename a group in Okta (or in a directory Okta imports) picks the name.
    let impostor = ("00gEVILgroup0h8", WRITERS_GROUP);
    let s = send(
        &app,
        "d1",
        vec![event(ADD, Some(&u), Some(impostor), 1, "e1")],
    )
    .await;
    assert_eq!(s["targets"][0]["changes"], 0, "{s}");
    assert!(env.role(&env.login("mallory")).await.is_none());
}

#[test]
fn grants_by_group_name_are_a_configuration_error() {
    let text = "[hook]\nsecret_arn = \"a\"\n[[targets]]\nname = \"t\"\nengine = \"postgres\"\nhost = \"h\"\n\
                database = \"d\"\nsecret_arn = \"s\"\n[[grants]]\nokta_group = \"eng-prod-writers\"\n\
                target = \"t\"\nroles = [\"r\"]\n";
    let err = okta_rds_sync::config::Config::parse(text, std::path::Path::new("t.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("grants[0].okta_group"), "{err}");
}

#[tokio::test]
async fn leaving_a_group_that_is_no_longer_mapped_is_remembered_when_it_is_mapped_again() {
    let env = TestEnv::new().await;
    let both = env.app().await;
    let u = User::new("00uREMAP0001", &env.login("ann"));
    send(
        &both,
        "d1",
        vec![
            event(ADD, Some(&u), Some(READERS), 1, "e1"),
            event(ADD, Some(&u), Some(WRITERS), 2, "e2"),
        ],
    )
    .await;
    // The writers mapping is removed from the config for a while; ann leaves writers meanwhile.
    let readers_only = env.config_toml().replace(
        &format!("[[grants]]\nokta_group = \"{WRITERS_GROUP}\""),
        "[[grants]]\nokta_group = \"00gUNUSEDgrp0h8\"",
    );
    let without_writers = env.app_from(&readers_only).await;
    send(
        &without_writers,
        "d2",
        vec![event(REMOVE, Some(&u), Some(WRITERS), 3, "e3")],
    )
    .await;
    // Writers is mapped again: any news about ann converges her without the stale membership.
    send(
        &both,
        "d3",
        vec![event("user.lifecycle.unsuspend", Some(&u), None, 4, "e4")],
    )
    .await;
    let role = env.role(&env.login("ann")).await.unwrap();
    assert_eq!(
        role.member_of,
        set(&[&env.marker_role, "rds_iam", &env.readonly_role])
    );
}

/// An event stamped at `published` (RFC 3339).
fn stamped(mut e: Value, published: &str) -> Value {
    e["published"] = Value::String(published.into());
    e
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test]
async fn forged_future_events_cannot_outlive_a_later_deactivation() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00uFORGED001", &env.login("ann"));
    // Whoever holds the hook secret sends "ann joins readers, ann is activated", stamped in the year 2999.
    let forged = send(
        &app,
        "forged",
        vec![
            stamped(
                event(ADD, Some(&u), Some(READERS), 0, "f1"),
                "2999-01-01T00:00:00.000Z",
            ),
            stamped(
                event("user.lifecycle.activate", Some(&u), None, 0, "f2"),
                "2999-01-01T00:00:00.000Z",
            ),
        ],
    )
    .await;
    assert_eq!(forged["refused_events"], 2, "{forged}");
    assert!(env.role(&env.login("ann")).await.is_none());
    let refusals: Vec<_> = env
        .audit()
        .await
        .into_iter()
        .filter(|a| a.action == "refuse_event")
        .collect();
    assert_eq!(refusals.len(), 2);
    assert!(refusals.iter().all(|a| a.outcome == "refused"));

    // Real events: ann joins (a minute ago), then is deactivated (now). She must end without access.
    let now = chrono::Utc::now();
    send(
        &app,
        "real-1",
        vec![stamped(
            event(ADD, Some(&u), Some(READERS), 0, "r1"),
            &rfc3339(now - chrono::Duration::seconds(60)),
        )],
    )
    .await;
    assert!(env.role(&env.login("ann")).await.unwrap().can_login);
    send(
        &app,
        "real-2",
        vec![stamped(
            event("user.lifecycle.deactivate", Some(&u), None, 0, "r2"),
            &rfc3339(now),
        )],
    )
    .await;
    let role = env.role(&env.login("ann")).await.unwrap();
    assert!(!role.can_login, "a forged future event kept ann's access");
    assert_eq!(role.member_of, set(&[&env.marker_role]));

    // Within the allowed skew (default 120 s) an event is accepted.
    let soon = send(
        &app,
        "skew",
        vec![stamped(
            event("user.lifecycle.activate", Some(&u), None, 0, "s1"),
            &rfc3339(chrono::Utc::now() + chrono::Duration::seconds(30)),
        )],
    )
    .await;
    assert_eq!(soon["refused_events"], 0, "{soon}");
    assert!(env.role(&env.login("ann")).await.unwrap().can_login);
}

/// A role that makes its members privileged on RDS (a member of `rds_superuser`), mapped to the writers
/// group with `allow_privileged = true`; returns the config.
async fn privileged_mapping(env: &TestEnv) -> String {
    let su = env.superuser().await;
    let dba = format!("{}_dba", env.prefix);
    su.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE rds_superuser NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         CREATE ROLE {dba} NOLOGIN; GRANT rds_superuser TO {dba};"
    ))
    .await
    .unwrap();
    env.let_master_grant(&dba).await;
    env.config_toml().replace(
        &format!("roles = [\"{}\"]", env.readwrite_role),
        &format!("roles = [\"{dba}\"]\nallow_privileged = true"),
    )
}

#[tokio::test]
async fn a_user_given_a_privileged_role_can_still_be_offboarded() {
    let env = TestEnv::new().await;
    let app = env.app_from(&privileged_mapping(&env).await).await;
    let u = User::new("00uPRIV00001", &env.login("ann"));
    send(
        &app,
        "d1",
        vec![event(ADD, Some(&u), Some(WRITERS), 1, "e1")],
    )
    .await;
    let role = env.login("ann");
    assert!(env.role(&role).await.unwrap().can_login);
    let session = env.open_session_as(&role).await;
    let s = send(
        &app,
        "d2",
        vec![event("user.lifecycle.deactivate", Some(&u), None, 2, "e2")],
    )
    .await;
    assert_eq!(s["targets"][0]["refused"], 0, "{s}");
    assert_eq!(s["targets"][0]["sessions_terminated"], 1, "{s}");
    assert!(session.simple_query("SELECT 1").await.is_err());
    let after = env.role(&role).await.unwrap();
    assert!(!after.can_login);
    assert_eq!(after.member_of, set(&[&env.marker_role]));
}

#[tokio::test]
async fn a_user_who_keeps_access_raises_the_alarm_and_is_drift() {
    let env = TestEnv::new().await;
    let toml = env.config_toml();
    let app = env.app().await;
    let u = User::new("00uSUPER0001", &env.login("ann"));
    send(
        &app,
        "d1",
        vec![event(ADD, Some(&u), Some(READERS), 1, "e1")],
    )
    .await;
    // A DBA makes the managed role a superuser: the (non-superuser) master can no longer alter it.
    let role = env.login("ann");
    env.superuser()
        .await
        .batch_execute(&format!(
            "ALTER ROLE {} SUPERUSER",
            okta_rds_sync::db::postgres::sql::quote_ident(&role).unwrap()
        ))
        .await
        .unwrap();
    let s = send(
        &app,
        "d2",
        vec![event("user.lifecycle.deactivate", Some(&u), None, 2, "e2")],
    )
    .await;
    assert_eq!(s["targets"][0]["access_left"], 1, "{s}");
    let audit = env.audit().await;
    let alarm = audit
        .iter()
        .find(|a| a.action == "access_left")
        .expect("audited");
    assert!(
        alarm.detail.contains("keeps its access"),
        "{}",
        alarm.detail
    );
    assert!(env.role(&role).await.unwrap().can_login);

    let (_okta, client) = okta_listing(&[(&u, "DEPROVISIONED")]).await;
    let check = reconcile(&toml, &client, true).await;
    assert!(check.drift(), "{check:?}");
    assert_eq!(check.access_left, 1);
}

#[tokio::test]
async fn logins_never_map_onto_protected_or_reserved_names() {
    let env = TestEnv::new().await;
    let p = &env.prefix;
    let toml = env.config_with("", &format!("protected_roles = [\"{p}_breakglass\"]"));
    let app = env.app_from(&toml).await;
    let logins = [
        format!("{p}_breakglass"),
        env.master.clone(),
        format!("rds_{p}@acme.com"),
        format!("PG_{p}@acme.com"),
        format!("jane\u{200B}{p}@acme.com"),
        format!("jane\u{202E}{p}@acme.com"),
        format!("jane{p}\u{2066}@acme.com"),
        format!("jose\u{0301}{p}@acme.com"),
        format!("jane{p}\u{00A0}@acme.com"),
    ];
    let users: Vec<User> = logins
        .iter()
        .enumerate()
        .map(|(i, l)| User::new(&format!("00uNAME{i:05}"), l))
        .collect();
    let events = users
        .iter()
        .enumerate()
        .map(|(i, u)| event(ADD, Some(u), Some(READERS), 1, &format!("n{i}")))
        .collect();
    let s = send(&app, "d1", events).await;
    assert_eq!(s["targets"][0]["refused"], logins.len(), "{s}");
    assert_eq!(s["targets"][0]["changes"], 0, "{s}");
    for login in &logins {
        let lowered = login.to_lowercase();
        if *login != env.master {
            assert!(env.role(login).await.is_none(), "{login:?} created");
            assert!(env.role(&lowered).await.is_none(), "{lowered:?} created");
        }
    }
    let master = env.role(&env.master).await.unwrap();
    // (On PostgreSQL 16+ the master is a member, without inheritance, of every role it created: normal.)
    assert!(master.comment.is_none(), "the master was not taken over");
    servers()
        .connect(&env.database, &env.master, &env.master_password)
        .await
        .expect("the master still logs in with its password");
    let refusals = env
        .audit()
        .await
        .into_iter()
        .filter(|a| a.action == "name_rejected")
        .count();
    assert_eq!(refusals, logins.len());
}

/// A profile update as Okta sends it, with `debugData.changedAttributes`.
fn profile_update(u: &User, changed: &str, second: u32, uuid: &str) -> Value {
    let mut e = event("user.account.update_profile", Some(u), None, second, uuid);
    e["debugContext"] = serde_json::json!({ "debugData": { "changedAttributes": changed } });
    e
}

#[tokio::test]
async fn deleting_a_user_never_renames_their_role() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let [ann, ben] = ["ann", "ben"].map(|n| User::new(&format!("00u{n}0delete"), &env.login(n)));
    send(
        &app,
        "d1",
        vec![
            event(ADD, Some(&ann), Some(READERS), 1, "e1"),
            event(ADD, Some(&ben), Some(READERS), 1, "e2"),
        ],
    )
    .await;
    // What Okta emits on deletion (same transaction): delete.initiated, then the login change to
    // <id>@deleted.invalid. ann's arrive in one batch, ben's in two deliveries in the wrong order.
    let placeholder = |u: &User| User::new(&u.id, &format!("{}@deleted.invalid", u.id));
    send(
        &app,
        "d2",
        vec![
            event("user.lifecycle.delete.initiated", Some(&ann), None, 5, "e3"),
            profile_update(&placeholder(&ann), "login", 5, "e4"),
        ],
    )
    .await;
    send(
        &app,
        "d3",
        vec![profile_update(&placeholder(&ben), "login", 6, "e6")],
    )
    .await;
    send(
        &app,
        "d4",
        vec![event(
            "user.lifecycle.delete.initiated",
            Some(&ben),
            None,
            5,
            "e5",
        )],
    )
    .await;
    for u in [&ann, &ben] {
        let role = env
            .role(&u.login)
            .await
            .unwrap_or_else(|| panic!("{} renamed", u.login));
        assert!(!role.can_login && role.member_of == set(&[&env.marker_role]));
        assert!(
            env.role(&placeholder(u).login.to_lowercase())
                .await
                .is_none()
        );
    }
    assert!(
        env.audit().await.iter().all(|a| a.action != "rename_role"),
        "no rename was audited"
    );
}

#[tokio::test]
async fn a_profile_update_that_did_not_change_the_login_is_not_a_rename() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let ann = User::new("00uann0title", &env.login("ann"));
    send(
        &app,
        "d1",
        vec![event(ADD, Some(&ann), Some(READERS), 1, "e1")],
    )
    .await;
    let other_login = User::new(&ann.id, &env.login("someone.else"));
    let s = send(
        &app,
        "d2",
        vec![profile_update(&other_login, "title,lastName", 2, "e2")],
    )
    .await;
    assert_eq!(s["ignored"], 1, "{s}");
    assert!(env.role(&env.login("ann")).await.unwrap().can_login);
    assert!(env.role(&env.login("someone.else")).await.is_none());
    // With "login" among the changed attributes it is one.
    send(
        &app,
        "d3",
        vec![profile_update(&other_login, "title,login", 3, "e3")],
    )
    .await;
    assert!(
        env.role(&env.login("someone.else"))
            .await
            .unwrap()
            .can_login
    );
}

async fn enqueue(queue: &str, body: &str) {
    okta_rds_sync_tests::sqs_client()
        .await
        .send_message()
        .queue_url(queue)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_worker_applies_only_what_the_hook_sealed() {
    let env = TestEnv::new().await;
    let queue = okta_rds_sync_tests::create_queue(&format!("{}-forged", env.prefix)).await;
    let [ann, ben] = ["ann", "ben"].map(|n| User::new(&format!("00u{n}0queue"), &env.login(n)));
    let add = |u: &User, id: &str| delivery(id, vec![event(ADD, Some(u), Some(READERS), 1, id)]);
    let now = chrono::Utc::now();

    // Someone with sqs:SendMessage: a message in the current format with a made-up MAC, one sealed with
    // another secret, a real message with its body swapped, and the old unsealed format.
    let genuine = okta_rds_sync_tests::sealed("q-ann", now, &add(&ann, "q-ann"));
    let mut made_up = genuine.clone();
    made_up.mac = "AAAA".into();
    made_up.body = add(&ben, "q-ben1");
    let other_secret = okta_rds_sync::queue::QueuedDelivery::sealed(
        "q-ben2",
        now,
        add(&ben, "q-ben2").as_bytes(),
        &okta_rds_sync::queue::QueueSeal::new(
            &okta_rds_sync::verify::HookSecret::parse("Bearer guessed").unwrap(),
        ),
    );
    let mut swapped = genuine.clone();
    swapped.body = add(&ben, "q-ann");
    let unsealed = serde_json::json!({
        "format": 1, "delivery_id": "q-ben3", "received_at": now, "body": add(&ben, "q-ben3")
    });
    for body in [
        made_up.encode(),
        other_secret.encode(),
        swapped.encode(),
        unsealed.to_string(),
    ] {
        enqueue(&queue, &body).await;
    }
    let worker = okta_rds_sync_tests::worker(&env.config_toml()).await;
    let drained = okta_rds_sync_tests::drain(&worker, &queue).await;
    assert_eq!((drained.applied, drained.failed), (0, 4), "{drained:?}");
    assert!(env.role(&env.login("ben")).await.is_none());

    // What the hook sealed is applied, including a message sealed before a rotation of the hook secret.
    enqueue(&queue, &genuine.encode()).await;
    env.sm
        .put_secret_value()
        .secret_id(&env.hook_secret_arn)
        .secret_string(
            serde_json::json!({"current": "Bearer rotated", "previous": okta_rds_sync_tests::DEMO_SECRET})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let after_rotation = okta_rds_sync_tests::worker(&env.config_toml()).await;
    okta_rds_sync_tests::wait_for_redelivery().await;
    let drained = okta_rds_sync_tests::drain(&after_rotation, &queue).await;
    assert_eq!(drained.applied, 1, "{drained:?}");
    assert!(env.role(&env.login("ann")).await.unwrap().can_login);
    assert!(env.role(&env.login("ben")).await.is_none());
}

#[tokio::test]
async fn the_worker_judges_event_times_against_the_original_receipt() {
    let env = TestEnv::new().await;
    let worker = okta_rds_sync_tests::worker(&env.config_toml()).await;
    let [ann, ben] = ["ann", "ben"].map(|n| User::new(&format!("00u{n}0skew"), &env.login(n)));
    let received = chrono::Utc::now() - chrono::Duration::hours(1);
    let body = delivery(
        "late",
        vec![
            // Within the skew of the receipt: accepted, although applied an hour later.
            stamped(
                event(ADD, Some(&ann), Some(READERS), 0, "ok"),
                &rfc3339(received + chrono::Duration::seconds(60)),
            ),
            // Before now, but half an hour after the receipt: a forgery.
            stamped(
                event(ADD, Some(&ben), Some(READERS), 0, "forged"),
                &rfc3339(received + chrono::Duration::minutes(30)),
            ),
        ],
    );
    let message = okta_rds_sync_tests::sealed("late", received, &body);
    assert_eq!(
        worker
            .handle_message(&message.encode(), std::time::Duration::from_secs(10))
            .await,
        retry_worker::Disposition::Applied
    );
    assert!(env.role(&env.login("ann")).await.unwrap().can_login);
    assert!(env.role(&env.login("ben")).await.is_none());
    assert!(
        env.audit()
            .await
            .iter()
            .any(|a| a.action == "refuse_event" && a.event_uuids == "forged")
    );
}

#[tokio::test]
async fn nothing_that_holds_secrets_prints_them() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00uDEBUG0001", &env.login("ann"));
    send(
        &app,
        "d1",
        vec![event(ADD, Some(&u), Some(READERS), 1, "e1")],
    )
    .await;
    // The hook secret and the master password are now cached in memory.
    let printed = format!("{app:?} {:#?}", app);
    let secret = okta_rds_sync_tests::DEMO_SECRET.trim_start_matches("Bearer ");
    assert!(!printed.contains(secret), "{printed}");
    assert!(!printed.contains("master-pw"), "{printed}");
    let worker = okta_rds_sync_tests::worker(&env.config_toml()).await;
    let printed = format!("{worker:?}");
    assert!(!printed.contains(secret) && !printed.contains("master-pw"));
}

#[tokio::test]
async fn a_delivery_touching_more_users_than_the_cap_is_applied_in_batches() {
    let env = TestEnv::new().await;
    let app = env
        .app_from(&env.config_with("", "users_per_transaction = 3"))
        .await;
    let users: Vec<User> = (0..10)
        .map(|i| User::new(&format!("00uCHUNK{i:04}"), &env.login(&format!("u{i}"))))
        .collect();
    let adds = users
        .iter()
        .enumerate()
        .map(|(i, u)| event(ADD, Some(u), Some(WRITERS), 1, &format!("a{i}")))
        .collect();
    let s = send(&app, "d1", adds).await;
    assert_eq!(s["targets"][0]["users"], 10, "{s}");
    let su = env.superuser().await;
    let transactions: i64 = su
        .query_one(
            "SELECT count(DISTINCT xmin::text) FROM okta_rds_sync.users WHERE role_name IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(transactions, 4, "10 users converged 3 at a time");
    let sessions = [
        env.open_session_as(&env.login("u0")).await,
        env.open_session_as(&env.login("u9")).await,
    ];
    // Deleting the group touches every member: also in batches, sessions killed in each.
    let s = send(
        &app,
        "d2",
        vec![event(
            "group.lifecycle.delete",
            None,
            Some(WRITERS),
            2,
            "del",
        )],
    )
    .await;
    assert_eq!(s["targets"][0]["users"], 10, "{s}");
    assert_eq!(s["targets"][0]["sessions_terminated"], 2, "{s}");
    for session in sessions {
        assert!(session.simple_query("SELECT 1").await.is_err());
    }
    for i in 0..10 {
        let role = env.role(&env.login(&format!("u{i}"))).await.unwrap();
        assert!(!role.can_login && role.member_of == set(&[&env.marker_role]));
    }
}

#[tokio::test]
async fn a_user_never_seen_gets_login_only_if_okta_says_active() {
    let env = TestEnv::new().await;
    let (private, public) = okta_keypair("ec");
    let okta = OktaServer::start("0oaLOOKUP", &public, Algorithm::ES256).await;
    let creds = serde_json::json!({ "client_id": "0oaLOOKUP", "kid": "k", "private_key": private });
    let arn = okta_rds_sync_tests::create_secret(
        &env.sm,
        &format!("{}-okta-api", env.prefix),
        &creds.to_string(),
    )
    .await;
    let with_api = env.config_toml().replace(
        "[okta]\n",
        &format!(
            "[okta]\norg_url = \"{}\"\napi_secret_arn = \"{arn}\"\n",
            okta.url
        ),
    );
    let app = env.app_from(&with_api).await;
    let [gone, active, unknown] =
        ["gone", "active", "unknown"].map(|n| User::new(&format!("00u{n}0look"), &env.login(n)));
    okta.set_user(&gone.id, &gone.login, "DEPROVISIONED").await;
    okta.set_user(&active.id, &active.login, "ACTIVE").await;
    // `unknown` is not in Okta's answers (404).
    let s = send(
        &app,
        "d1",
        vec![
            event(ADD, Some(&gone), Some(READERS), 1, "e1"),
            event(ADD, Some(&active), Some(READERS), 1, "e2"),
            event(ADD, Some(&unknown), Some(READERS), 1, "e3"),
        ],
    )
    .await;
    assert!(
        env.role(&env.login("gone")).await.is_none(),
        "deactivated in Okta: no LOGIN on a group add alone"
    );
    assert!(env.role(&env.login("active")).await.unwrap().can_login);
    assert!(env.role(&env.login("unknown")).await.is_none());
    assert_eq!(s["targets"][0]["refused"], 1, "{s}");
    assert!(
        env.audit()
            .await
            .iter()
            .any(|a| a.action == "status_unverified" && a.okta_id == unknown.id)
    );
    let lookups = okta
        .counters
        .user_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(lookups, 3);
    // The answers are recorded: the next event for these users asks Okta nothing.
    send(
        &app,
        "d2",
        vec![
            event(ADD, Some(&active), Some(WRITERS), 2, "e4"),
            event(ADD, Some(&gone), Some(WRITERS), 2, "e5"),
        ],
    )
    .await;
    assert_eq!(
        okta.counters
            .user_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        lookups
    );
    assert!(env.role(&env.login("gone")).await.is_none());

    // Without the API, the assumption is audited.
    let plain = env.app().await;
    let new = User::new("00unew00look", &env.login("new"));
    send(
        &plain,
        "d3",
        vec![event(ADD, Some(&new), Some(READERS), 1, "e6")],
    )
    .await;
    let login = env
        .audit()
        .await
        .into_iter()
        .find(|a| a.okta_id == new.id && a.action == "enable_login")
        .unwrap();
    assert!(
        login.detail.contains("status_unverified"),
        "{}",
        login.detail
    );
}

#[tokio::test]
async fn a_revoke_is_audited_as_what_the_catalog_then_says() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00uREVOKE001", &env.login("ann"));
    send(
        &app,
        "d1",
        vec![
            event(ADD, Some(&u), Some(READERS), 1, "e1"),
            event(ADD, Some(&u), Some(WRITERS), 1, "e2"),
        ],
    )
    .await;
    // A DBA also grants ann the writers' role, as the superuser.
    let su = env.superuser().await;
    let role = okta_rds_sync::db::postgres::sql::quote_ident(&env.login("ann")).unwrap();
    su.batch_execute(&format!(
        "GRANT {} TO {role} GRANTED BY postgres",
        env.readwrite_role
    ))
    .await
    .unwrap();
    let s = send(
        &app,
        "d2",
        vec![event(REMOVE, Some(&u), Some(WRITERS), 2, "e3")],
    )
    .await;
    let member = env
        .role(&env.login("ann"))
        .await
        .unwrap()
        .member_of
        .contains(&env.readwrite_role);
    let revoke = env
        .audit()
        .await
        .into_iter()
        .find(|a| a.action == "revoke")
        .unwrap();
    if servers().pg_major >= 16 {
        // PostgreSQL 16+: the master's REVOKE removed only its own grant; the DBA's remains.
        assert!(member);
        assert_eq!(revoke.outcome, "failed", "{}", revoke.detail);
        assert_eq!(s["targets"][0]["failed"], 1, "{s}");
    } else {
        assert!(!member);
        assert_eq!(revoke.outcome, "applied");
    }
}

#[tokio::test]
async fn every_connection_pins_search_path_and_bounds_its_waits() {
    use okta_rds_sync::converge::Backend;
    let env = TestEnv::new().await;
    let config =
        okta_rds_sync::config::Config::parse(&env.config_toml(), std::path::Path::new("t.toml"))
            .unwrap();
    // Settings a DBA put on the master's role and the database do not win over the startup options.
    let su = env.superuser().await;
    su.batch_execute(&format!(
        "ALTER ROLE {m} SET search_path = public, pg_catalog; ALTER ROLE {m} SET statement_timeout = 0;
         ALTER ROLE {m} SET jit = on; ALTER DATABASE {d} SET idle_in_transaction_session_timeout = 0;
         ALTER DATABASE {d} SET exit_on_error = on; ALTER DATABASE {d} SET synchronous_commit = off;
         GRANT {r} TO {m}; ALTER ROLE {m} SET role = {r}",
        m = env.master,
        d = env.database,
        r = env.readonly_role
    ))
    .await
    .unwrap();
    // Settings that only newer servers know, which no startup option can name on older ones.
    let major = okta_rds_sync_tests::servers().pg_major;
    let newer = [
        (16, "createrole_self_grant = 'set, inherit'"),
        (17, "transaction_timeout = '1ms'"),
    ];
    for (_, setting) in newer.iter().filter(|(since, _)| major >= *since) {
        su.batch_execute(&format!("ALTER ROLE {} SET {setting}", env.master))
            .await
            .unwrap();
    }
    let secrets = okta_rds_sync::secrets::Secrets::new(
        &okta_rds_sync_tests::sdk_config().await,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let mut pg =
        okta_rds_sync::db::postgres::PgBackend::new(&config.targets[0], &config, None).unwrap();
    pg.ready(&secrets).await.unwrap();
    assert_eq!(pg.show("search_path").await.unwrap(), "pg_catalog,pg_temp");
    assert_eq!(pg.show("statement_timeout").await.unwrap(), "10s");
    assert_eq!(
        pg.show("idle_in_transaction_session_timeout")
            .await
            .unwrap(),
        "5s"
    );
    // JIT would compile the catalog reads (estimated over every role) on each execution.
    assert_eq!(pg.show("jit").await.unwrap(), "off");
    assert_eq!(
        pg.show("role").await.unwrap(),
        "none",
        "the session runs as the master"
    );
    // Every error would end the session (a failed user's step, a statement prepared before bootstrap).
    assert_eq!(pg.show("exit_on_error").await.unwrap(), "off");
    assert_eq!(pg.show("synchronous_commit").await.unwrap(), "on");
    if major >= 16 {
        assert_eq!(pg.show("createrole_self_grant").await.unwrap(), "");
    }
    if major >= 17 {
        assert_eq!(pg.show("transaction_timeout").await.unwrap(), "0");
    }
}

#[tokio::test]
async fn a_login_holding_advisory_locks_cannot_stop_an_offboarding() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00uLOCKER0001", &env.login("eve"));
    send(
        &app,
        "d1",
        vec![event(ADD, Some(&u), Some(READERS), 1, "e1")],
    )
    .await;
    // The user about to leave holds the advisory locks the tool once used for her and for bootstraps.
    let eve = env.open_session_as(&env.login("eve")).await;
    eve.batch_execute(&format!(
        "SELECT pg_advisory_lock(hashtextextended('okta-rds-sync:{}', 0));
         SELECT pg_advisory_lock(hashtextextended('okta-rds-sync:bootstrap', 0));",
        u.id
    ))
    .await
    .unwrap();
    // Nor can she lock the rows the tool serializes on now.
    let denied = eve
        .batch_execute("BEGIN; SELECT 1 FROM okta_rds_sync.users FOR UPDATE")
        .await;
    assert!(denied.is_err(), "the state schema is the master's alone");
    let fresh_cold_start = env.app().await;
    let s = send(
        &fresh_cold_start,
        "d2",
        vec![event("user.lifecycle.deactivate", Some(&u), None, 2, "e2")],
    )
    .await;
    assert_eq!(s["queued"], false, "{s}");
    assert!(!env.role(&env.login("eve")).await.unwrap().can_login);
    assert!(
        eve.simple_query("SELECT 1").await.is_err(),
        "her session is gone"
    );
}

#[tokio::test]
async fn a_role_renamed_or_unmarked_behind_our_back_is_still_offboarded() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let [ren, com, unm] =
        ["ren", "com", "unm"].map(|n| User::new(&format!("00u{n}0ident"), &env.login(n)));
    send(
        &app,
        "d1",
        vec![
            event(ADD, Some(&ren), Some(READERS), 1, "e1"),
            event(ADD, Some(&com), Some(READERS), 1, "e2"),
            event(ADD, Some(&unm), Some(READERS), 1, "e3"),
        ],
    )
    .await;
    let su = env.superuser().await;
    let q = |n: &str| okta_rds_sync::db::postgres::sql::quote_ident(&env.login(n)).unwrap();
    su.batch_execute(&format!(
        "ALTER ROLE {} RENAME TO {}_renamed;
         COMMENT ON ROLE {} IS 'not managed, honest';
         REVOKE {} FROM {};",
        q("ren"),
        env.prefix,
        q("com"),
        env.marker_role,
        q("unm"),
    ))
    .await
    .unwrap();
    let s = send(
        &app,
        "d2",
        vec![
            event("user.lifecycle.deactivate", Some(&ren), None, 2, "e4"),
            event("user.lifecycle.deactivate", Some(&com), None, 2, "e5"),
            event("user.lifecycle.deactivate", Some(&unm), None, 2, "e6"),
        ],
    )
    .await;
    assert_eq!(s["targets"][0]["access_left"], 0, "{s}");
    for name in [
        format!("{}_renamed", env.prefix),
        env.login("com"),
        env.login("unm"),
    ] {
        let role = env.role(&name).await.unwrap();
        assert!(
            !role.can_login && !role.member_of.contains("rds_iam"),
            "{name}: {role:?}"
        );
    }
}

#[tokio::test]
async fn whoever_holds_an_offboarded_role_loses_it_and_their_sessions() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00uHELD00001", &env.login("eve"));
    send(
        &app,
        "d1",
        vec![event(ADD, Some(&u), Some(READERS), 1, "e1")],
    )
    .await;
    // An accomplice was made a member of eve's role (on PostgreSQL 14 eve could do it herself).
    let accomplice = format!("{}_accomplice", env.prefix);
    let su = env.superuser().await;
    let role = okta_rds_sync::db::postgres::sql::quote_ident(&env.login("eve")).unwrap();
    su.batch_execute(&format!(
        "CREATE ROLE {accomplice} LOGIN PASSWORD 'acc-pw'; GRANT {role} TO {accomplice};"
    ))
    .await
    .unwrap();
    let session = servers()
        .connect(&env.database, &accomplice, "acc-pw")
        .await
        .unwrap();
    session
        .batch_execute(&format!("SET ROLE {role}"))
        .await
        .unwrap();
    send(
        &app,
        "d2",
        vec![event("user.lifecycle.deactivate", Some(&u), None, 2, "e2")],
    )
    .await;
    let still_member = env
        .role(&accomplice)
        .await
        .unwrap()
        .member_of
        .contains(&env.login("eve"));
    if servers().pg_major >= 16 {
        // PostgreSQL 16+: the master cannot revoke a grant another grantor made; the audit says so (alarm).
        assert!(still_member);
        assert!(
            env.audit()
                .await
                .iter()
                .any(|a| a.action == "revoke" && a.outcome == "failed")
        );
    } else {
        assert!(!still_member, "membership in the offboarded role revoked");
    }
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "the session that had SET ROLE into it is gone"
    );
}

#[tokio::test]
async fn a_master_made_member_of_a_managed_role_is_healed_not_locked_out() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let [eve, ann] = ["eve", "ann"].map(|n| User::new(&format!("00u{n}0heal"), &env.login(n)));
    send(
        &app,
        "d1",
        vec![event(ADD, Some(&eve), Some(READERS), 1, "e1")],
    )
    .await;
    let role = okta_rds_sync::db::postgres::sql::quote_ident(&env.login("eve")).unwrap();
    if servers().pg_major < 15 {
        // PostgreSQL 14: the user does it herself.
        let session = env.open_session_as(&env.login("eve")).await;
        session
            .batch_execute(&format!("GRANT {role} TO {}", env.master))
            .await
            .expect("PostgreSQL 14 lets a role grant itself");
    } else {
        env.grant_inherited(&role, &env.master).await;
    }
    // Another user's onboarding (which grants) and eve's own deactivation both go through.
    let s = send(
        &app,
        "d2",
        vec![
            event(ADD, Some(&ann), Some(READERS), 2, "e2"),
            event("user.lifecycle.deactivate", Some(&eve), None, 2, "e3"),
        ],
    )
    .await;
    assert_eq!(s["queued"], false, "{s}");
    assert!(env.role(&env.login("ann")).await.unwrap().can_login);
    assert!(!env.role(&env.login("eve")).await.unwrap().can_login);
    servers()
        .connect(&env.database, &env.master, &env.master_password)
        .await
        .expect("the master still logs in with its password");
}

#[tokio::test]
async fn a_read_only_default_set_by_a_database_owner_does_not_stop_offboarding() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let u = User::new("00uREADONLY1", &env.login("eve"));
    send(
        &app,
        "d1",
        vec![event(ADD, Some(&u), Some(READERS), 1, "e1")],
    )
    .await;
    env.superuser()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET default_transaction_read_only = on",
            env.database
        ))
        .await
        .unwrap();
    env.drop_master_connections().await;
    let s = send(
        &app,
        "d2",
        vec![event("user.lifecycle.deactivate", Some(&u), None, 2, "e2")],
    )
    .await;
    assert_eq!(s["queued"], false, "{s}");
    assert!(!env.role(&env.login("eve")).await.unwrap().can_login);
}

#[tokio::test]
async fn a_rename_never_holds_back_an_offboarding() {
    let env = TestEnv::new().await;
    let app = env.app().await;
    let [taker, zed] = ["taker", "zed"].map(|n| User::new(&format!("00u{n}0ren"), &env.login(n)));
    send(
        &app,
        "d1",
        vec![event(ADD, Some(&zed), Some(READERS), 1, "e1")],
    )
    .await;
    // One delivery: someone takes the name, zed is renamed to it, and zed is deactivated.
    let renamed = User::new(&zed.id, &env.login("taker"));
    send(
        &app,
        "d2",
        vec![
            event(ADD, Some(&taker), Some(READERS), 2, "e2"),
            event("user.account.update_profile", Some(&renamed), None, 3, "e3"),
            event("user.lifecycle.deactivate", Some(&renamed), None, 4, "e4"),
        ],
    )
    .await;
    let role = env.role(&env.login("zed")).await.unwrap();
    assert!(!role.can_login, "NOLOGIN whatever happened to the rename");
}

#[tokio::test]
async fn a_reconcile_batch_that_cannot_lock_does_not_stop_the_others() {
    let env = TestEnv::new().await;
    let toml = env.config_with("", "users_per_transaction = 1");
    let app = env.app_from(&toml).await;
    let [ann, ben] = ["ann", "ben"].map(|n| User::new(&format!("00u{n}0batch"), &env.login(n)));
    send(
        &app,
        "d1",
        vec![
            event(ADD, Some(&ann), Some(READERS), 1, "e1"),
            event(ADD, Some(&ben), Some(READERS), 1, "e2"),
        ],
    )
    .await;
    // Something holds ann's state row (a long transaction of another delivery, say).
    let mut holder = env.superuser().await;
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM okta_rds_sync.users WHERE okta_id = $1 FOR UPDATE",
        &[&ann.id],
    )
    .await
    .unwrap();
    let (_okta, client) = okta_listing(&[(&ann, "DEPROVISIONED"), (&ben, "DEPROVISIONED")]).await;
    let report = reconcile(&toml, &client, false).await;
    assert_eq!(report.failed, 1, "{report:?}");
    assert!(report.drift());
    assert!(
        !env.role(&env.login("ben")).await.unwrap().can_login,
        "ben converged"
    );
    tx.rollback().await.unwrap();
    let again = reconcile(&toml, &client, false).await;
    assert_eq!(again.failed, 0);
    assert!(
        !env.role(&env.login("ann")).await.unwrap().can_login,
        "ann on the next run"
    );
}
