//! Okta Management API client for the reconcile job (OKTA.md §5).
//!
//! - OAuth 2.0 client credentials with `private_key_jwt` (RS256 or ES256 key with its `kid`) against the org
//!   authorization server (`/oauth2/v1/token`);
//! - DPoP (RFC 9449): a per-process P-256 key; every token request and API call carries a proof with
//!   `htm`/`htu` (and `ath` for API calls); `use_dpop_nonce` challenges are answered by retrying with the
//!   server's nonce. New Okta service apps require DPoP;
//! - the access token is cached until shortly before it expires;
//! - group members via `/api/v1/groups/{id}/users?limit=200`, following `Link: rel="next"` (only to the
//!   org's own origin, so the token never leaves it; never the same page twice; at most [`MAX_PAGES`]);
//! - redirects are never followed (a token or a DPoP proof must not reach another URL);
//! - HTTP 429: wait until `X-Rate-Limit-Reset`, measured against the response's `Date` (clock skew), plus
//!   jitter, a bounded number of times, and never past the caller's deadline (the function's timeout).
//!
//! Tokens, assertions and keys never appear in errors or logs.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

/// Refresh the token this long before Okta's expiry.
const TOKEN_EARLY_REFRESH: Duration = Duration::from_secs(300);
/// Longest wait for a rate-limit reset.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
pub const PAGE_SIZE: u32 = 200;
/// Most pages of one group listing (2,000,000 users at 200 a page): a server that never ends its `next`
/// links must not keep the function busy until its timeout.
pub const MAX_PAGES: usize = 10_000;
/// Longest single request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum OktaError {
    #[error("Okta credentials: {0}")]
    Credentials(String),
    #[error("Okta request to {path} failed: {message}")]
    Transport { path: String, message: String },
    #[error("Okta answered {status} for {path}: {message}")]
    Status {
        path: String,
        status: u16,
        message: String,
    },
    #[error("Okta rate limit on {path}: still limited after {retries} retries")]
    RateLimited { path: String, retries: u32 },
    #[error("Okta rate limit on {path}: its reset comes after this run's deadline")]
    Deadline { path: String },
    #[error("Okta response for {path} is not what was expected: {message}")]
    Invalid { path: String, message: String },
}

impl OktaError {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            OktaError::Transport { .. }
            | OktaError::RateLimited { .. }
            | OktaError::Deadline { .. } => true,
            OktaError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// The service app's credentials, as stored in Secrets Manager:
/// `{"client_id": "0oa…", "kid": "…", "private_key": "-----BEGIN PRIVATE KEY-----…"}` (RSA or P-256).
#[derive(Clone, Deserialize)]
pub struct OktaCredentials {
    pub client_id: String,
    pub kid: String,
    pub private_key: String,
}

impl std::fmt::Debug for OktaCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaCredentials")
            .field("client_id", &self.client_id)
            .field("kid", &self.kid)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl OktaCredentials {
    pub fn parse(secret_string: &str) -> Result<Self, OktaError> {
        serde_json::from_str(secret_string).map_err(|_| {
            OktaError::Credentials(
                "expected JSON with \"client_id\", \"kid\" and \"private_key\" (PEM)".into(),
            )
        })
    }
}

/// A user as listed by Okta.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OktaUser {
    pub id: String,
    pub status: String,
    pub profile: OktaProfile,
    /// When Okta last changed the user (status included): what a looked-up status is true as of.
    #[serde(default, rename = "lastUpdated")]
    pub last_updated: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OktaProfile {
    pub login: String,
}

struct CachedToken {
    value: String,
    dpop: bool,
    refresh_at: Instant,
}

/// A client for one Okta org.
pub struct OktaClient {
    http: reqwest::Client,
    org: String,
    client_id: String,
    assertion_key: EncodingKey,
    assertion_header: Header,
    dpop_key: EncodingKey,
    dpop_jwk: Jwk,
    scopes: String,
    token: Mutex<Option<CachedToken>>,
    nonce: std::sync::Mutex<Option<String>>,
    max_retries: u32,
    /// No request and no rate-limit wait goes past this (the invoking function's own deadline).
    deadline: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OktaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaClient")
            .field("org", &self.org)
            .field("client_id", &self.client_id)
            .finish()
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

#[derive(Serialize)]
struct DpopClaims<'a> {
    jti: String,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct OAuthError {
    error: Option<String>,
}

fn random_id() -> String {
    let mut bytes = [0u8; 18];
    // aws-lc-rs's system random; failure would mean no entropy at all.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The URL without query and fragment (RFC 9449 `htu`).
fn htu(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// The `rel="next"` target of a `Link` header, if any.
pub fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

/// How long to wait before retrying a 429: until `X-Rate-Limit-Reset` (epoch seconds) as seen by the
/// server's `Date`, plus `jitter`, capped.
pub fn rate_limit_wait(reset: Option<&str>, date: Option<&str>, jitter: Duration) -> Duration {
    let server_now = date
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        .map(|d| d.timestamp())
        .unwrap_or_else(now_secs);
    let wait = reset
        .and_then(|r| r.trim().parse::<i64>().ok())
        .map(|reset| Duration::from_secs(u64::try_from(reset - server_now).unwrap_or(0)))
        .unwrap_or(Duration::from_secs(1));
    wait.min(MAX_RATE_LIMIT_WAIT) + jitter
}

impl OktaClient {
    /// `org_url` like `https://acme.okta.com`; `scopes` like `okta.groups.read okta.users.read`.
    pub fn new(
        org_url: &str,
        credentials: &OktaCredentials,
        scopes: &str,
    ) -> Result<Self, OktaError> {
        let pem = credentials.private_key.as_bytes();
        let (assertion_key, alg) = match EncodingKey::from_ec_pem(pem) {
            Ok(k) => (k, Algorithm::ES256),
            Err(_) => (
                EncodingKey::from_rsa_pem(pem).map_err(|_| {
                    OktaError::Credentials(
                        "private_key is neither an RSA nor a P-256 PEM key".into(),
                    )
                })?,
                Algorithm::RS256,
            ),
        };
        let mut assertion_header = Header::new(alg);
        assertion_header.kid = Some(credentials.kid.clone());
        let generated = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .map_err(|_| OktaError::Credentials("cannot generate a DPoP key".into()))?;
        let dpop_key = EncodingKey::from_ec_der(generated.as_ref());
        let dpop_jwk = Jwk::from_encoding_key(&dpop_key, Algorithm::ES256)
            .map_err(|e| OktaError::Credentials(format!("DPoP key: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OktaError::Credentials(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            org: org_url.trim_end_matches('/').to_owned(),
            client_id: credentials.client_id.clone(),
            assertion_key,
            assertion_header,
            dpop_key,
            dpop_jwk,
            scopes: scopes.to_owned(),
            token: Mutex::new(None),
            nonce: std::sync::Mutex::new(None),
            max_retries: 3,
            deadline: std::sync::Mutex::new(None),
        })
    }

    /// Bound every later request and rate-limit wait by `deadline` (`None`: only by the request timeout).
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        if let Ok(mut slot) = self.deadline.lock() {
            *slot = deadline;
        }
    }

    /// Time left before the deadline, if one is set.
    fn time_left(&self) -> Option<Duration> {
        let deadline = self.deadline.lock().ok().and_then(|d| *d)?;
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    /// How long the next request may take.
    fn request_timeout(&self) -> Duration {
        self.time_left()
            .map_or(REQUEST_TIMEOUT, |left| left.min(REQUEST_TIMEOUT))
    }

    fn token_url(&self) -> String {
        format!("{}/oauth2/v1/token", self.org)
    }

    fn sign<T: Serialize>(
        &self,
        header: &Header,
        claims: &T,
        key: &EncodingKey,
    ) -> Result<String, OktaError> {
        jsonwebtoken::encode(header, claims, key)
            .map_err(|e| OktaError::Credentials(format!("signing: {e}")))
    }

    fn client_assertion(&self) -> Result<String, OktaError> {
        let iat = now_secs();
        let aud = self.token_url();
        let claims = AssertionClaims {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: &aud,
            iat,
            exp: iat + 300,
            jti: random_id(),
        };
        self.sign(&self.assertion_header, &claims, &self.assertion_key)
    }

    fn dpop_proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
    ) -> Result<String, OktaError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.dpop_jwk.clone());
        let nonce = self.nonce.lock().map(|n| n.clone()).unwrap_or_default();
        let ath = access_token.map(|t| URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())));
        let claims = DpopClaims {
            jti: random_id(),
            htm: method,
            htu: htu(url),
            iat: now_secs(),
            nonce,
            ath,
        };
        self.sign(&header, &claims, &self.dpop_key)
    }

    fn remember_nonce(&self, response: &reqwest::Response) -> bool {
        match response
            .headers()
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
        {
            Some(n) => {
                if let Ok(mut slot) = self.nonce.lock() {
                    *slot = Some(n.to_owned());
                }
                true
            }
            None => false,
        }
    }

    async fn fetch_token(&self) -> Result<CachedToken, OktaError> {
        let url = self.token_url();
        let path = "/oauth2/v1/token".to_owned();
        for attempt in 0..2 {
            let form = [
                ("grant_type", "client_credentials".to_owned()),
                ("scope", self.scopes.clone()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ),
                ("client_assertion", self.client_assertion()?),
            ];
            let response = self
                .http
                .post(&url)
                .timeout(self.request_timeout())
                .header("accept", "application/json")
                .header("dpop", self.dpop_proof("POST", &url, None)?)
                .form(&form)
                .send()
                .await
                .map_err(|e| OktaError::Transport {
                    path: path.clone(),
                    message: e.without_url().to_string(),
                })?;
            let status = response.status();
            let fresh_nonce = self.remember_nonce(&response);
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                let t: TokenResponse =
                    serde_json::from_str(&text).map_err(|_| OktaError::Invalid {
                        path: path.clone(),
                        message: "token response".into(),
                    })?;
                let lifetime =
                    Duration::from_secs(t.expires_in).saturating_sub(TOKEN_EARLY_REFRESH);
                return Ok(CachedToken {
                    value: t.access_token,
                    dpop: t.token_type.eq_ignore_ascii_case("dpop"),
                    refresh_at: Instant::now() + lifetime,
                });
            }
            let error = serde_json::from_str::<OAuthError>(&text)
                .ok()
                .and_then(|e| e.error)
                .unwrap_or_default();
            if error == "use_dpop_nonce" && fresh_nonce && attempt == 0 {
                continue;
            }
            return Err(OktaError::Status {
                path,
                status: status.as_u16(),
                message: error,
            });
        }
        Err(OktaError::Status {
            path,
            status: 400,
            message: "use_dpop_nonce".into(),
        })
    }

    /// A valid access token (cached until shortly before it expires).
    async fn access_token(&self) -> Result<(String, bool), OktaError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok((t.value.clone(), t.dpop));
        }
        let fresh = self.fetch_token().await?;
        let out = (fresh.value.clone(), fresh.dpop);
        *slot = Some(fresh);
        Ok(out)
    }

    /// GET an API URL of this org, with DPoP, nonce retries and rate-limit waits.
    async fn get(&self, url: &str) -> Result<reqwest::Response, OktaError> {
        let path = htu(url).strip_prefix(&self.org).unwrap_or("?").to_owned();
        let mut nonce_retried = false;
        let mut limited = 0;
        loop {
            let (token, dpop) = self.access_token().await?;
            let mut request = self
                .http
                .get(url)
                .timeout(self.request_timeout())
                .header("accept", "application/json");
            request = if dpop {
                request
                    .header("authorization", format!("DPoP {token}"))
                    .header("dpop", self.dpop_proof("GET", url, Some(&token))?)
            } else {
                request.header("authorization", format!("Bearer {token}"))
            };
            let response = request.send().await.map_err(|e| OktaError::Transport {
                path: path.clone(),
                message: e.without_url().to_string(),
            })?;
            let status = response.status().as_u16();
            match status {
                200..=299 => return Ok(response),
                401 if !nonce_retried && self.remember_nonce(&response) => nonce_retried = true,
                429 if limited < self.max_retries => {
                    limited += 1;
                    let header = |n: &str| {
                        response
                            .headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let mut jitter = [0u8; 1];
                    let _ = aws_lc_rs::rand::fill(&mut jitter);
                    let wait = rate_limit_wait(
                        header("x-rate-limit-reset").as_deref(),
                        header("date").as_deref(),
                        Duration::from_millis(u64::from(jitter[0])),
                    );
                    if self.time_left().is_some_and(|left| left <= wait) {
                        return Err(OktaError::Deadline { path });
                    }
                    tracing::warn!(%path, wait_ms = wait.as_millis() as u64, "Okta rate limit; waiting for the reset");
                    tokio::time::sleep(wait).await;
                }
                429 => {
                    return Err(OktaError::RateLimited {
                        path,
                        retries: self.max_retries,
                    });
                }
                _ => {
                    let code = response.json::<serde_json::Value>().await.ok();
                    let message = code
                        .as_ref()
                        .and_then(|v| v.get("errorCode").or(v.get("error")))
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_owned();
                    return Err(OktaError::Status {
                        path,
                        status,
                        message,
                    });
                }
            }
        }
    }

    /// One user (`GET /api/v1/users/{id}`).
    pub async fn user(&self, user_id: &str) -> Result<OktaUser, OktaError> {
        let path = "/api/v1/users".to_owned();
        if !crate::okta::is_okta_id(user_id) {
            return Err(OktaError::Invalid {
                path,
                message: format!("{user_id:?} is not a user id"),
            });
        }
        let response = self
            .get(&format!("{}/api/v1/users/{user_id}", self.org))
            .await?;
        response.json().await.map_err(|e| OktaError::Invalid {
            path,
            message: e.without_url().to_string(),
        })
    }

    /// Every member of a group (all pages).
    pub async fn group_members(&self, group_id: &str) -> Result<Vec<OktaUser>, OktaError> {
        if !crate::okta::is_okta_id(group_id) {
            return Err(OktaError::Invalid {
                path: "/api/v1/groups".into(),
                message: format!("{group_id:?} is not a group id"),
            });
        }
        let mut url = format!(
            "{}/api/v1/groups/{group_id}/users?limit={PAGE_SIZE}",
            self.org
        );
        let mut users = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let path = htu(&url).strip_prefix(&self.org).unwrap_or("?").to_owned();
            if !seen.insert(url.clone()) {
                return Err(OktaError::Invalid {
                    path,
                    message: "the next link points to a page already read (a loop)".into(),
                });
            }
            if seen.len() > MAX_PAGES {
                return Err(OktaError::Invalid {
                    path,
                    message: format!("more than {MAX_PAGES} pages"),
                });
            }
            let response = self.get(&url).await?;
            let next = response
                .headers()
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link);
            let page: Vec<OktaUser> = response.json().await.map_err(|e| OktaError::Invalid {
                path: path.clone(),
                message: e.without_url().to_string(),
            })?;
            users.extend(page);
            match next {
                Some(n) if n.starts_with(&format!("{}/", self.org)) => url = n,
                Some(_) => {
                    return Err(OktaError::Invalid {
                        path,
                        message: "next link leaves the org's origin".into(),
                    });
                }
                None => return Ok(users),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let both = "<https://acme.okta.com/api/v1/groups/00g1/users?limit=200>; rel=\"self\", \
                    <https://acme.okta.com/api/v1/groups/00g1/users?after=00u9&limit=200>; rel=\"next\"";
        assert_eq!(
            next_link(both).as_deref(),
            Some("https://acme.okta.com/api/v1/groups/00g1/users?after=00u9&limit=200")
        );
        assert_eq!(next_link("<https://acme.okta.com/x>; rel=\"self\""), None);
        assert_eq!(
            next_link("<https://a/x>;rel=next").as_deref(),
            Some("https://a/x")
        );
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn rate_limit_waits_use_the_servers_clock() {
        // The server's Date says 10:00:00 and the reset is 10:00:07: wait 7 s whatever our clock says.
        let date = "Sun, 22 Nov 2026 10:00:00 GMT";
        let reset = chrono::DateTime::parse_from_rfc2822(date)
            .unwrap()
            .timestamp()
            + 7;
        let wait = rate_limit_wait(
            Some(&reset.to_string()),
            Some(date),
            Duration::from_millis(100),
        );
        assert_eq!(wait, Duration::from_millis(7100));
        assert_eq!(
            rate_limit_wait(
                Some(&(reset + 1000).to_string()),
                Some(date),
                Duration::ZERO
            ),
            MAX_RATE_LIMIT_WAIT
        );
        assert_eq!(
            rate_limit_wait(Some("0"), Some(date), Duration::ZERO),
            Duration::ZERO
        );
        assert_eq!(
            rate_limit_wait(None, None, Duration::ZERO),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn htu_drops_query_and_fragment() {
        assert_eq!(htu("https://a/b?c=d#e"), "https://a/b");
        assert_eq!(htu("https://a/b"), "https://a/b");
    }

    #[test]
    fn credentials_never_print_the_key() {
        let c =
            OktaCredentials::parse(r#"{"client_id":"0oa1","kid":"k1","private_key":"SECRET-PEM"}"#)
                .unwrap();
        assert!(!format!("{c:?}").contains("SECRET-PEM"));
        assert!(
            OktaCredentials::parse("SECRET-PEM")
                .unwrap_err()
                .to_string()
                .contains("client_id")
        );
        let err = OktaClient::new("https://a", &c, "okta.groups.read")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("SECRET-PEM"), "{err}");
    }
}
