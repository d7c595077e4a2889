//! The Okta Management API client against a local Okta emulator over real HTTP: private_key_jwt (RS256
//! and ES256), DPoP with the nonce challenge, token caching, pagination, 429 handling, and refusal to follow
//! a next link to another origin.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use okta_rds_sync::okta_api::{OktaClient, OktaCredentials, OktaError};
use okta_rds_sync_tests::okta_keypair;
use okta_rds_sync_tests::okta_server::OktaServer;

fn members(n: usize, prefix: &str) -> Vec<(String, String, &'static str)> {
    (0..n)
        .map(|i| {
            (
                format!("00u{prefix}{i:05}"),
                format!("user{i}@{prefix}.acme.com"),
                if i % 7 == 0 {
                    "DEPROVISIONED"
                } else {
                    "ACTIVE"
                },
            )
        })
        .collect()
}

async fn setup(kind: &str) -> (OktaServer, OktaClient) {
    let (private, public) = okta_keypair(kind);
    let alg = if kind == "rsa" {
        Algorithm::RS256
    } else {
        Algorithm::ES256
    };
    let server = OktaServer::start("0oaRECONCILE1", &public, alg).await;
    let creds = OktaCredentials {
        client_id: "0oaRECONCILE1".into(),
        kid: "key-1".into(),
        private_key: private,
    };
    let client = OktaClient::new(&server.url, &creds, "okta.groups.read okta.users.read").unwrap();
    (server, client)
}

#[tokio::test]
async fn lists_every_member_across_pages_with_dpop_and_one_token() {
    for kind in ["ec", "rsa"] {
        let (server, client) = setup(kind).await;
        server.set_members("00gREADERS1", &members(450, "r")).await;
        server.set_members("00gWRITERS1", &members(3, "w")).await;
        let readers = client.group_members("00gREADERS1").await.unwrap();
        assert_eq!(readers.len(), 450, "{kind}: three pages of 200");
        assert_eq!(readers[449].profile.login, "user449@r.acme.com");
        assert_eq!(
            readers
                .iter()
                .filter(|u| u.status == "DEPROVISIONED")
                .count(),
            65
        );
        assert_eq!(client.group_members("00gWRITERS1").await.unwrap().len(), 3);
        let c = &server.counters;
        assert_eq!(c.api_requests.load(Ordering::SeqCst), 4, "{kind}");
        assert_eq!(
            c.nonce_challenges.load(Ordering::SeqCst),
            1,
            "{kind}: the first proof has no nonce"
        );
        assert_eq!(
            c.token_requests.load(Ordering::SeqCst),
            2,
            "{kind}: challenge + one token, then cached"
        );
        assert_eq!(c.rejected.load(Ordering::SeqCst), 0, "{kind}");
    }
}

#[tokio::test]
async fn rate_limits_are_waited_out_until_the_reset() {
    let (server, client) = setup("ec").await;
    server.set_members("00gREADERS1", &members(450, "r")).await;
    server.state.lock().await.rate_limit_every = 2;
    let started = Instant::now();
    let readers = client.group_members("00gREADERS1").await.unwrap();
    assert_eq!(readers.len(), 450);
    assert!(server.counters.rate_limited.load(Ordering::SeqCst) >= 2);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for X-Rate-Limit-Reset"
    );
}

#[tokio::test]
async fn a_persistent_rate_limit_ends_in_a_transient_error() {
    let (server, client) = setup("ec").await;
    server.set_members("00gREADERS1", &members(5, "r")).await;
    {
        let mut state = server.state.lock().await;
        state.rate_limit_every = 1;
        state.rate_limit_reset_secs = 0;
    }
    let err = client.group_members("00gREADERS1").await.unwrap_err();
    assert!(
        matches!(err, OktaError::RateLimited { retries: 3, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(server.counters.rate_limited.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_key_okta_does_not_know_is_refused() {
    let (_, other_public) = okta_keypair("ec");
    let (private, _) = okta_keypair("ec");
    let server = OktaServer::start("0oaRECONCILE1", &other_public, Algorithm::ES256).await;
    let creds = OktaCredentials {
        client_id: "0oaRECONCILE1".into(),
        kid: "key-1".into(),
        private_key: private.clone(),
    };
    let client = OktaClient::new(&server.url, &creds, "okta.groups.read").unwrap();
    let err = client.group_members("00gREADERS1").await.unwrap_err();
    assert!(
        matches!(err, OktaError::Status { status: 401, .. }),
        "{err}"
    );
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("PRIVATE KEY"));
}

#[tokio::test]
async fn next_links_to_another_origin_are_not_followed() {
    let (server, client) = setup("ec").await;
    server.set_members("00gREADERS1", &members(5, "r")).await;
    server.state.lock().await.foreign_next_link = true;
    let err = client.group_members("00gREADERS1").await.unwrap_err();
    assert!(err.to_string().contains("origin"), "{err}");
    assert!(client.group_members("not/a/group").await.is_err());
}

#[tokio::test]
async fn the_token_is_refreshed_before_it_expires() {
    let (server, client) = setup("ec").await;
    server.set_members("00gREADERS1", &members(5, "r")).await;
    // Okta tokens live an hour; this one lives 301 s, so it is refreshed after 1 s (300 s early).
    server.state.lock().await.token_lifetime_secs = 301;
    client.group_members("00gREADERS1").await.unwrap();
    client.group_members("00gREADERS1").await.unwrap();
    assert_eq!(
        server.counters.token_requests.load(Ordering::SeqCst),
        2,
        "cached"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.group_members("00gREADERS1").await.unwrap();
    assert_eq!(
        server.counters.token_requests.load(Ordering::SeqCst),
        3,
        "refreshed"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (server, client) = setup("ec").await;
    let (elsewhere, _) = setup("ec").await;
    server.set_members("00gREADERS1", &members(5, "r")).await;
    elsewhere.set_members("00gREADERS1", &members(5, "r")).await;
    server.state.lock().await.redirect_to =
        Some(format!("{}/api/v1/groups/00gREADERS1/users", elsewhere.url));
    let err = client.group_members("00gREADERS1").await.unwrap_err();
    assert!(
        matches!(err, OktaError::Status { status: 302, .. }),
        "{err}"
    );
    assert_eq!(
        elsewhere.counters.api_requests.load(Ordering::SeqCst)
            + elsewhere.counters.token_requests.load(Ordering::SeqCst),
        0,
        "no request, token or proof reached the redirect's target"
    );
}

#[tokio::test]
async fn a_next_link_that_loops_ends_the_listing_with_an_error() {
    let (server, client) = setup("ec").await;
    server.set_members("00gREADERS1", &members(450, "r")).await;
    server.state.lock().await.looping_next_link = true;
    let started = Instant::now();
    let err = client.group_members("00gREADERS1").await.unwrap_err();
    assert!(err.to_string().contains("loop"), "{err}");
    assert!(server.counters.api_requests.load(Ordering::SeqCst) <= 3);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn rate_limit_waits_never_pass_the_deadline() {
    let (server, client) = setup("ec").await;
    server.set_members("00gREADERS1", &members(5, "r")).await;
    {
        let mut state = server.state.lock().await;
        state.rate_limit_every = 1;
        state.rate_limit_reset_secs = 30;
    }
    client.set_deadline(Some(Instant::now() + Duration::from_secs(2)));
    let started = Instant::now();
    let err = client.group_members("00gREADERS1").await.unwrap_err();
    assert!(matches!(err, OktaError::Deadline { .. }), "{err}");
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gave up at once instead of sleeping past the deadline"
    );
}
