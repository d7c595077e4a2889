//! Secrets from AWS Secrets Manager, cached in memory with a TTL by the official
//! `aws_secretsmanager_caching` client. A forced refresh bypasses the cache (password rotation).
//! Secret values never appear in errors, logs or `Debug` output.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_secretsmanager_caching::SecretsManagerCachingClient;
use serde::Deserialize;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret {arn}: {message}")]
    Fetch { arn: String, message: String },
    #[error("secret {arn} has no SecretString")]
    NotString { arn: String },
    #[error("secret {arn} is not of the expected form: {message}")]
    Form { arn: String, message: String },
}

/// Cached access to Secrets Manager.
pub struct Secrets {
    cache: SecretsManagerCachingClient,
    /// One read at a time per secret: concurrent first reads (at cold start, the warm-up and the first
    /// request both want the hook secret) wait for one call instead of each making its own. Each gate
    /// holds when its secret's last forced refresh began.
    gates: std::sync::Mutex<HashMap<String, Gate>>,
}

type Gate = Arc<tokio::sync::Mutex<Option<Instant>>>;

/// How long a read waits for another read of the same secret before making its own call: a stalled call
/// must not hold every reader of the secret.
const GATE_WAIT: Duration = Duration::from_secs(1);

/// Hand-written: the caching client's own `Debug` prints the cached secret values.
impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<cached values redacted>)")
    }
}

impl Secrets {
    /// `sdk` comes from `aws_config` (honours `AWS_REGION`, `AWS_ENDPOINT_URL`, the Lambda role, …).
    pub fn new(sdk: &aws_config::SdkConfig, ttl: Duration) -> Result<Self, SecretError> {
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        let max = NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN);
        let cache = SecretsManagerCachingClient::new(client, max, ttl, false).map_err(|e| {
            SecretError::Fetch {
                arn: "-".into(),
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            cache,
            gates: std::sync::Mutex::default(),
        })
    }

    fn gate(&self, arn: &str) -> Gate {
        let mut gates = self
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        gates.entry(arn.to_owned()).or_default().clone()
    }

    /// The SecretString of `arn`, from the cache unless `refresh` (then from Secrets Manager).
    pub async fn get(&self, arn: &str, refresh: bool) -> Result<String, SecretError> {
        let asked = Instant::now();
        let gate = self.gate(arn);
        let mut turn = tokio::time::timeout(GATE_WAIT, gate.lock()).await.ok();
        // A forced refresh that began after this one was asked for is as fresh as this one would be (after
        // a password rotation, every reader asks at once).
        let refreshed_meanwhile = turn
            .as_deref()
            .and_then(Option::as_ref)
            .is_some_and(|began| *began > asked);
        let refresh = refresh && !refreshed_meanwhile;
        let began = Instant::now();
        let value = match self.cache.get_secret_value(arn, None, None, refresh).await {
            Ok(v) => v,
            Err(e) => {
                return Err(SecretError::Fetch {
                    arn: arn.into(),
                    message: redact_error(&e.to_string()),
                });
            }
        };
        if let Some(last) = turn.as_deref_mut().filter(|_| refresh) {
            *last = Some(began);
        }
        value
            .secret_string
            .ok_or_else(|| SecretError::NotString { arn: arn.into() })
    }

    pub async fn master_credentials(
        &self,
        arn: &str,
        refresh: bool,
    ) -> Result<MasterCredentials, SecretError> {
        let text = self.get(arn, refresh).await?;
        MasterCredentials::parse(&text).map_err(|message| SecretError::Form {
            arn: arn.into(),
            message,
        })
    }
}

/// SDK error texts name the operation and service, not values; keep them short all the same.
fn redact_error(text: &str) -> String {
    text.chars().take(300).collect()
}

/// The RDS-managed master secret (`{"username": "...", "password": "...", ...}`).
#[derive(Clone, Deserialize)]
pub struct MasterCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for MasterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl MasterCredentials {
    /// Errors never quote the secret text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let creds: MasterCredentials = serde_json::from_str(text).map_err(|_| {
            "expected JSON with string fields \"username\" and \"password\"".to_owned()
        })?;
        if creds.username.is_empty() || creds.password.is_empty() {
            return Err("\"username\" and \"password\" must not be empty".into());
        }
        Ok(creds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_secret_forms() {
        let c = MasterCredentials::parse(
            r#"{"username":"master","password":"p@ss","engine":"postgres","port":5432}"#,
        )
        .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("master", "p@ss")
        );
        assert!(!format!("{c:?}").contains("p@ss"));
        for bad in [
            "p@ssw0rd-plain",
            r#"{"username":"m"}"#,
            r#"{"username":"","password":"x"}"#,
        ] {
            let err = MasterCredentials::parse(bad).unwrap_err();
            assert!(!err.contains("p@ss"), "{err}");
        }
    }
}
