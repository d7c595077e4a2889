//! A local stand-in for the few Okta endpoints the reconcile job uses, over real HTTP, checking what Okta
//! checks:
//! - `POST /oauth2/v1/token`: client credentials with a `private_key_jwt` assertion (signature with the
//!   registered public key, `iss`/`sub` = client id, `aud` = token URL, `exp`), and a DPoP proof (signature
//!   with its embedded JWK, `typ`, `htm`, `htu`, `iat`, the server nonce: the first proof without it gets
//!   `400 use_dpop_nonce` with a `DPoP-Nonce` header, as Okta does);
//! - `GET /api/v1/groups/{id}/users?limit=&after=`: `Authorization: DPoP <token>` plus a proof bound to the
//!   same key, with `ath`; pages linked with `Link: <…>; rel="next"`; optional 429s with
//!   `X-Rate-Limit-Reset` and `Date`, a redirect elsewhere, or a `next` link that loops;
//! - `GET /api/v1/users/{id}`: the same authentication; the user, or 404.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// Knobs and counters of the emulator.
#[derive(Debug, Default)]
pub struct OktaState {
    /// group id -> members (Okta `User` JSON objects).
    pub groups: HashMap<String, Vec<Value>>,
    /// Answer every Nth API request with 429 (0: never).
    pub rate_limit_every: u32,
    /// Seconds until the advertised reset.
    pub rate_limit_reset_secs: i64,
    /// Put a `next` link to another origin on the first page.
    pub foreign_next_link: bool,
    /// Put a `next` link to the same page on every page.
    pub looping_next_link: bool,
    /// Answer member listings with `302 Location: <this>`.
    pub redirect_to: Option<String>,
    /// user id -> Okta `User` JSON, for `GET /api/v1/users/{id}`.
    pub users: HashMap<String, Value>,
    pub token_lifetime_secs: u64,
    tokens: HashMap<String, String>,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub token_requests: AtomicU32,
    pub nonce_challenges: AtomicU32,
    pub api_requests: AtomicU32,
    pub user_requests: AtomicU32,
    pub rate_limited: AtomicU32,
    pub rejected: AtomicU32,
}

#[derive(Debug)]
pub struct OktaServer {
    pub url: String,
    pub client_id: String,
    pub state: Arc<Mutex<OktaState>>,
    pub counters: Arc<Counters>,
}

struct Shared {
    base: String,
    client_id: String,
    public_key: (DecodingKey, Algorithm),
    nonce: String,
    state: Arc<Mutex<OktaState>>,
    counters: Arc<Counters>,
}

impl OktaServer {
    /// Start with the client's registered public key (PEM) and its algorithm (RS256 or ES256).
    pub async fn start(client_id: &str, public_key_pem: &str, alg: Algorithm) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let key = match alg {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(public_key_pem.as_bytes()),
            _ => DecodingKey::from_ec_pem(public_key_pem.as_bytes()),
        }
        .expect("public key");
        let state = Arc::new(Mutex::new(OktaState {
            token_lifetime_secs: 3600,
            rate_limit_reset_secs: 1,
            ..OktaState::default()
        }));
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            base: url.clone(),
            client_id: client_id.to_owned(),
            public_key: (key, alg),
            nonce: "server-nonce-1".into(),
            state: state.clone(),
            counters: counters.clone(),
        });
        crate::http::serve(listener, shared, route);
        Self {
            url,
            client_id: client_id.to_owned(),
            state,
            counters,
        }
    }

    /// Set what `GET /api/v1/users/{id}` answers for a user.
    pub async fn set_user(&self, id: &str, login: &str, status: &str) {
        let user =
            json!({ "id": id, "status": status, "profile": { "login": login, "email": login } });
        self.state.lock().await.users.insert(id.to_owned(), user);
    }

    /// Add members to a group: `(id, login, status)`.
    pub async fn set_members(&self, group: &str, members: &[(String, String, &str)]) {
        let users = members
            .iter()
            .map(|(id, login, status)| json!({ "id": id, "status": status, "profile": { "login": login, "email": login } }))
            .collect();
        self.state
            .lock()
            .await
            .groups
            .insert(group.to_owned(), users);
    }
}

fn respond(status: StatusCode, body: Value, headers: &[(&str, String)]) -> Response<Full<Bytes>> {
    let mut all = vec![("content-type", "application/json".to_owned())];
    all.extend(headers.iter().map(|(k, v)| (*k, v.clone())));
    crate::http::response(status, Bytes::from(body.to_string()), &all)
}

fn oauth_error(shared: &Shared, error: &str) -> Response<Full<Bytes>> {
    shared.counters.rejected.fetch_add(1, Ordering::SeqCst);
    respond(StatusCode::BAD_REQUEST, json!({ "error": error }), &[])
}

/// Verify a DPoP proof; returns the JWK thumbprint of its key.
fn check_proof(
    shared: &Shared,
    proof: &str,
    method: &str,
    htu: &str,
    token: Option<&str>,
) -> Result<String, &'static str> {
    let header = jsonwebtoken::decode_header(proof).map_err(|_| "invalid_dpop_proof")?;
    if header.typ.as_deref() != Some("dpop+jwt") || header.alg != Algorithm::ES256 {
        return Err("invalid_dpop_proof");
    }
    let jwk = header.jwk.ok_or("invalid_dpop_proof")?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "invalid_dpop_proof")?;
    let mut v = Validation::new(Algorithm::ES256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(proof, &key, &v)
        .map_err(|_| "invalid_dpop_proof")?
        .claims;
    let now = chrono::Utc::now().timestamp();
    let iat = claims["iat"].as_i64().unwrap_or(0);
    if claims["htm"] != method
        || claims["htu"] != htu
        || (now - iat).abs() > 60
        || claims["jti"].as_str().is_none()
    {
        return Err("invalid_dpop_proof");
    }
    if claims["nonce"].as_str() != Some(shared.nonce.as_str()) {
        return Err("use_dpop_nonce");
    }
    if let Some(t) = token
        && claims["ath"].as_str()
            != Some(
                URL_SAFE_NO_PAD
                    .encode(Sha256::digest(t.as_bytes()))
                    .as_str(),
            )
    {
        return Err("invalid_dpop_proof");
    }
    jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .map_err(|_| "invalid_dpop_proof")
}

async fn route(
    shared: Arc<Shared>,
    req: Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method.clone();
    let path = req.uri.path().to_owned();
    let query = req.uri.query().unwrap_or("").to_owned();
    let header = |n: &str| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (dpop, authorization) = (header("dpop"), header("authorization"));
    Ok(match (method, path.as_str()) {
        (Method::POST, "/oauth2/v1/token") => token(&shared, &body, dpop).await,
        (Method::GET, p) if p.starts_with("/api/v1/groups/") && p.ends_with("/users") => {
            let group = p
                .trim_start_matches("/api/v1/groups/")
                .trim_end_matches("/users")
                .to_owned();
            members(&shared, &group, &query, dpop, authorization).await
        }
        (Method::GET, p) if p.starts_with("/api/v1/users/") => {
            let id = p.trim_start_matches("/api/v1/users/").to_owned();
            user(&shared, &id, dpop, authorization).await
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            json!({ "errorCode": "E0000022" }),
            &[],
        ),
    })
}

async fn token(shared: &Shared, body: &[u8], dpop: Option<String>) -> Response<Full<Bytes>> {
    shared
        .counters
        .token_requests
        .fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let token_url = format!("{}/oauth2/v1/token", shared.base);
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || form.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return oauth_error(shared, "invalid_request");
    }
    let (key, alg) = &shared.public_key;
    let mut v = Validation::new(*alg);
    v.set_audience(&[&token_url]);
    v.set_issuer(&[&shared.client_id]);
    v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let assertion = form
        .get("client_assertion")
        .map(String::as_str)
        .unwrap_or("");
    match jsonwebtoken::decode::<Value>(assertion, key, &v) {
        Ok(t) if t.claims["sub"] == shared.client_id.as_str() && t.header.kid.is_some() => {}
        _ => {
            shared.counters.rejected.fetch_add(1, Ordering::SeqCst);
            return respond(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "invalid_client" }),
                &[],
            );
        }
    }
    let Some(proof) = dpop else {
        return oauth_error(shared, "invalid_dpop_proof");
    };
    match check_proof(shared, &proof, "POST", &token_url, None) {
        Ok(jkt) => {
            let token = format!(
                "tok-{}",
                shared.counters.token_requests.load(Ordering::SeqCst)
            );
            let mut state = shared.state.lock().await;
            state.tokens.insert(token.clone(), jkt);
            respond(
                StatusCode::OK,
                json!({ "token_type": "DPoP", "access_token": token, "expires_in": state.token_lifetime_secs,
                        "scope": form.get("scope").cloned().unwrap_or_default() }),
                &[],
            )
        }
        Err("use_dpop_nonce") => {
            shared
                .counters
                .nonce_challenges
                .fetch_add(1, Ordering::SeqCst);
            respond(
                StatusCode::BAD_REQUEST,
                json!({ "error": "use_dpop_nonce" }),
                &[("dpop-nonce", shared.nonce.clone())],
            )
        }
        Err(e) => oauth_error(shared, e),
    }
}

/// The 401 for a GET of `url` without a DPoP-bound access token and its proof, if so.
fn denial(
    shared: &Shared,
    state: &OktaState,
    url: &str,
    dpop: Option<String>,
    authorization: Option<String>,
) -> Option<Response<Full<Bytes>>> {
    let token = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("DPoP "))
        .unwrap_or("");
    let bound = state.tokens.get(token).cloned();
    let proof = dpop
        .as_deref()
        .map(|p| check_proof(shared, p, "GET", url, Some(token)));
    match (bound, proof) {
        (Some(jkt), Some(Ok(proof_jkt))) if jkt == proof_jkt => None,
        _ => {
            shared.counters.rejected.fetch_add(1, Ordering::SeqCst);
            Some(respond(
                StatusCode::UNAUTHORIZED,
                json!({ "errorCode": "E0000011" }),
                &[],
            ))
        }
    }
}

async fn user(
    shared: &Shared,
    id: &str,
    dpop: Option<String>,
    authorization: Option<String>,
) -> Response<Full<Bytes>> {
    shared.counters.user_requests.fetch_add(1, Ordering::SeqCst);
    let url = format!("{}/api/v1/users/{id}", shared.base);
    let state = shared.state.lock().await;
    if let Some(denied) = denial(shared, &state, &url, dpop, authorization) {
        return denied;
    }
    match state.users.get(id) {
        Some(u) => respond(StatusCode::OK, u.clone(), &[]),
        None => respond(
            StatusCode::NOT_FOUND,
            json!({ "errorCode": "E0000007" }),
            &[],
        ),
    }
}

async fn members(
    shared: &Shared,
    group: &str,
    query: &str,
    dpop: Option<String>,
    authorization: Option<String>,
) -> Response<Full<Bytes>> {
    let n = shared.counters.api_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let url = format!("{}/api/v1/groups/{group}/users", shared.base);
    let state = shared.state.lock().await;
    if let Some(denied) = denial(shared, &state, &url, dpop, authorization) {
        return denied;
    }
    if let Some(location) = &state.redirect_to {
        return respond(
            StatusCode::FOUND,
            json!({}),
            &[("location", location.clone())],
        );
    }
    if state.rate_limit_every > 0 && n.is_multiple_of(state.rate_limit_every) {
        shared.counters.rate_limited.fetch_add(1, Ordering::SeqCst);
        let now = chrono::Utc::now();
        return respond(
            StatusCode::TOO_MANY_REQUESTS,
            json!({ "errorCode": "E0000047" }),
            &[
                ("x-rate-limit-limit", "600".into()),
                ("x-rate-limit-remaining", "0".into()),
                (
                    "x-rate-limit-reset",
                    (now.timestamp() + state.rate_limit_reset_secs).to_string(),
                ),
                ("date", now.to_rfc2822().replace("+0000", "GMT")),
            ],
        );
    }
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 1000);
    let after: usize = params
        .get("after")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let Some(all) = state.groups.get(group) else {
        return respond(
            StatusCode::NOT_FOUND,
            json!({ "errorCode": "E0000007" }),
            &[],
        );
    };
    let page: Vec<Value> = all.iter().skip(after).take(limit).cloned().collect();
    let mut headers = vec![("link", format!("<{url}?limit={limit}>; rel=\"self\""))];
    if state.looping_next_link {
        headers.push((
            "link",
            format!("<{url}?limit={limit}&after={after}>; rel=\"next\""),
        ));
    } else if state.foreign_next_link {
        headers.push((
            "link",
            "<https://evil.example/api/v1/groups/x/users?after=1>; rel=\"next\"".into(),
        ));
    } else if after + limit < all.len() {
        headers.push((
            "link",
            format!(
                "<{url}?limit={limit}&after={}>; rel=\"next\"",
                after + limit
            ),
        ));
    }
    respond(StatusCode::OK, Value::Array(page), &headers)
}
