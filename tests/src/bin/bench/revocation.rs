//! Receipt of a deactivation to zero sessions, on a PostgreSQL and a MariaDB target: users onboarded, live
//! sessions opened as them, then one delivery deactivating them all. okta-hook answers only once their
//! sessions are gone, so the time to the answer bounds the time to zero sessions; each sample then checks
//! on the server that no session is left. Also the floor: the server alone, signalled and polled by a
//! superuser with no hook in between.

use std::time::{Duration, Instant};

use okta_rds_sync_tests::mariadb::{MyEnv, mariadb};
use okta_rds_sync_tests::okta::{User, delivery, event, request_event_json};
use okta_rds_sync_tests::{READERS_GROUP, TestEnv, function_env, servers};

use crate::function::{Function, assert_applied};
use crate::stats::Summary;

/// Users × sessions each, as the goals state them.
pub const SCENARIOS: [(usize, usize); 3] = [(1, 1), (1, 50), (50, 2)];

/// A server whose sessions the benchmark opens and counts.
enum Server<'a> {
    Postgres(&'a TestEnv),
    MariaDb,
}

/// One kept superuser connection per engine for the set-up and the checks: a connection per check would
/// leave a backend exiting (a millisecond of CPU on this 2-core machine) under the delivery measured next.
static PG_CHECKER: tokio::sync::OnceCell<tokio_postgres::Client> =
    tokio::sync::OnceCell::const_new();
static MY_CHECKER: tokio::sync::Mutex<Option<mysql_async::Conn>> =
    tokio::sync::Mutex::const_new(None);

async fn pg_checker() -> &'static tokio_postgres::Client {
    PG_CHECKER
        .get_or_init(|| async { servers().superuser("postgres").await })
        .await
}

/// Live PostgreSQL sessions of `users`, counted by a superuser's `client`.
pub async fn pg_sessions(client: &tokio_postgres::Client, users: &[String]) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE usename = ANY($1)",
            &[&users],
        )
        .await
        .expect("count sessions")
        .get(0)
}

/// Live sessions held open until dropped.
enum Sessions {
    Postgres(#[allow(dead_code)] Vec<tokio_postgres::Client>),
    MariaDb(#[allow(dead_code)] Vec<mysql_async::Conn>),
}

impl Server<'_> {
    async fn open(&self, logins: &[String], each: usize) -> Sessions {
        match self {
            Server::Postgres(env) => {
                let su = pg_checker().await;
                let mut held = Vec::new();
                for login in logins {
                    let role = okta_rds_sync::db::postgres::sql::quote_ident(login).expect("ident");
                    su.batch_execute(&format!("ALTER ROLE {role} PASSWORD 'session-pw'"))
                        .await
                        .expect("password");
                    for _ in 0..each {
                        held.push(
                            servers()
                                .connect(&env.database, login, "session-pw")
                                .await
                                .expect("session"),
                        );
                    }
                }
                Sessions::Postgres(held)
            }
            Server::MariaDb => {
                use mysql_async::prelude::Queryable;
                let mut checker = MY_CHECKER.lock().await;
                if checker.is_none() {
                    *checker = Some(mariadb().root().await);
                }
                let root = checker.as_mut().expect("root connection");
                let mut held = Vec::new();
                for login in logins {
                    let account = okta_rds_sync::db::mysql::sql::account(login).expect("account");
                    root.query_drop(format!("ALTER USER {account} IDENTIFIED BY 'session-pw'"))
                        .await
                        .expect("password");
                    for _ in 0..each {
                        held.push(
                            mariadb()
                                .connect(login, "session-pw")
                                .await
                                .expect("session"),
                        );
                    }
                }
                Sessions::MariaDb(held)
            }
        }
    }

    async fn count(&self, logins: &[String]) -> i64 {
        match self {
            Server::Postgres(_) => pg_sessions(pg_checker().await, logins).await,
            Server::MariaDb => {
                use mysql_async::prelude::Queryable;
                let mut checker = MY_CHECKER.lock().await;
                if checker.is_none() {
                    *checker = Some(mariadb().root().await);
                }
                let root = checker.as_mut().expect("root connection");
                let list = serde_json::to_string(logins).expect("json");
                root.exec_first::<i64, _, _>(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST
                     WHERE JSON_CONTAINS(?, JSON_QUOTE(USER))",
                    (list,),
                )
                .await
                .expect("count sessions")
                .unwrap_or(0)
            }
        }
    }
}

/// The p50/p95 of receipt → zero sessions for each scenario on one engine's target.
async fn scenarios(
    engine: &str,
    server: Server<'_>,
    config: &std::path::Path,
    binary: &std::path::Path,
    env: &TestEnv,
    iterations: usize,
) -> Vec<Summary> {
    let function = Function::spawn(binary, &function_env(config, "warn"))
        .await
        .expect("start okta-hook");
    let mut summaries = Vec::new();
    for (users, each) in SCENARIOS {
        let mut samples = Vec::new();
        for it in 0..iterations {
            let tag = format!("{engine}u{users}s{each}i{it}");
            let people: Vec<User> = (0..users)
                .map(|j| {
                    User::new(
                        &format!("00uRV{tag}j{j}"),
                        &env.login(&format!("rv.{tag}.{j}")),
                    )
                })
                .collect();
            let logins: Vec<String> = people.iter().map(|u| u.login.clone()).collect();
            let events = |kind: &str, second: u32| {
                people
                    .iter()
                    .enumerate()
                    .map(|(j, u)| {
                        let group =
                            (kind == "group.user_membership.add").then_some((READERS_GROUP, "r"));
                        event(kind, Some(u), group, second, &format!("{kind}-{tag}-{j}"))
                    })
                    .collect::<Vec<_>>()
            };
            let (_, body) = function
                .invoke(&request_event_json(&delivery(
                    &format!("add-{tag}"),
                    events("group.user_membership.add", 1),
                )))
                .await;
            assert_applied(&body, users);
            let held = server.open(&logins, each).await;
            assert_eq!(
                server.count(&logins).await,
                (users * each) as i64,
                "sessions opened"
            );
            let (took, body) = function
                .invoke(&request_event_json(&delivery(
                    &format!("off-{tag}"),
                    events("user.lifecycle.deactivate", 2),
                )))
                .await;
            assert_applied(&body, users);
            assert_eq!(
                server.count(&logins).await,
                0,
                "{tag}: sessions left after the answer"
            );
            samples.push(took);
            drop(held);
        }
        summaries.push(Summary::print(
            &format!("revocation {engine}: {users} user(s) x {each} session(s)"),
            samples,
        ));
    }
    summaries
}

/// Both engines' figures: `(PostgreSQL, MariaDB)`, one summary per scenario.
pub async fn run(
    binary: &std::path::Path,
    env: &TestEnv,
    iterations: usize,
) -> (Vec<Summary>, Vec<Summary>) {
    let dir = &servers().dir;
    let pg_config = dir.join("bench-revocation-pg.toml");
    std::fs::write(&pg_config, env.config_toml()).expect("config");
    let postgres = scenarios(
        "pg",
        Server::Postgres(env),
        &pg_config,
        binary,
        env,
        iterations,
    )
    .await;

    let my = MyEnv::new("benchmy", &env.sm).await;
    let my_config = dir.join("bench-revocation-my.toml");
    let hook_only = env.config_toml();
    let hook_only = &hook_only[..hook_only.find("[[targets]]").expect("targets")];
    std::fs::write(&my_config, format!("{hook_only}{}", my.target_toml("my"))).expect("config");
    let mariadb = scenarios("my", Server::MariaDb, &my_config, binary, env, iterations).await;
    (postgres, mariadb)
}

/// The server's own floor for PostgreSQL: a superuser signals every session of the scenario's users and
/// polls until they are gone, with no hook, no Lambda and no audit in between.
pub async fn postgres_floor(env: &TestEnv, iterations: usize) -> Vec<Summary> {
    let su = servers().superuser("postgres").await;
    let mut summaries = Vec::new();
    for (users, each) in SCENARIOS {
        let mut samples = Vec::new();
        for it in 0..iterations {
            let logins: Vec<String> = (0..users)
                .map(|j| format!("{}_floor_{users}_{each}_{it}_{j}", env.prefix))
                .collect();
            for login in &logins {
                su.batch_execute(&format!("CREATE ROLE {login} LOGIN PASSWORD 'session-pw'"))
                    .await
                    .expect("role");
            }
            let held = Server::Postgres(env).open(&logins, each).await;
            let started = Instant::now();
            su.execute(
                "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
                 WHERE usename = ANY($1)",
                &[&logins],
            )
            .await
            .expect("terminate");
            let mut wait = Duration::from_millis(1);
            loop {
                if pg_sessions(&su, &logins).await == 0 {
                    break;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(8));
            }
            samples.push(started.elapsed());
            drop(held);
        }
        summaries.push(Summary::print(
            &format!("floor pg (server alone): {users} x {each}"),
            samples,
        ));
    }
    summaries
}
