//! Okta user statuses looked up through the Management API, for users the hook has never seen a lifecycle
//! event or a listing for: a group add alone must not give LOGIN to a user Okta has deactivated.
//!
//! The client is the reconcile's (same `[okta]` settings and service app), made on first use so the hook's
//! cold start does no network I/O. Answers are cached in memory for a few minutes; the engine also records
//! each answer as a status fact, stamped with the lookup time, so a later event newer than the lookup wins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, OnceCell};

use crate::config::Config;
use crate::journal::{UserStatus, status_from_okta};
use crate::okta_api::{OktaClient, OktaCredentials};
use crate::secrets::Secrets;

/// How long an answer is kept in memory.
const CACHE_TTL: Duration = Duration::from_secs(300);

/// A user's status as Okta answered it, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookedUp {
    pub status: UserStatus,
    pub at: DateTime<Utc>,
}

#[derive(Debug)]
pub struct StatusLookup {
    org_url: String,
    api_secret_arn: String,
    scopes: String,
    client: OnceCell<OktaClient>,
    cache: Mutex<HashMap<String, (LookedUp, Instant)>>,
}

impl StatusLookup {
    /// A lookup when the config names the Okta API (`[okta] org_url` and `api_secret_arn`), else `None`.
    pub fn from_config(config: &Config) -> Option<Arc<Self>> {
        let okta = &config.okta;
        Some(Arc::new(Self {
            org_url: okta.org_url.clone()?,
            api_secret_arn: okta.api_secret_arn.clone()?,
            scopes: okta.scopes.clone(),
            client: OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
        }))
    }

    async fn client(&self, secrets: &Secrets) -> Result<&OktaClient, String> {
        self.client
            .get_or_try_init(|| async {
                let text = secrets
                    .get(&self.api_secret_arn, false)
                    .await
                    .map_err(|e| e.to_string())?;
                let creds = OktaCredentials::parse(&text).map_err(|e| e.to_string())?;
                OktaClient::new(&self.org_url, &creds, &self.scopes).map_err(|e| e.to_string())
            })
            .await
    }

    /// The statuses of these users now, from the cache or from Okta (concurrently), each an answer or why
    /// there is none; nothing takes longer than `timeout`.
    pub async fn statuses(
        self: &Arc<Self>,
        secrets: &Secrets,
        ids: &[String],
        timeout: Duration,
    ) -> HashMap<String, Result<LookedUp, String>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut answers: HashMap<String, Result<LookedUp, String>> = ids
            .iter()
            .map(|id| (id.clone(), Err("no answer from Okta in time".to_owned())))
            .collect();
        match tokio::time::timeout_at(deadline, self.client(secrets)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                answers.values_mut().for_each(|a| *a = Err(e.clone()));
                return answers;
            }
            Err(_) => return answers,
        }
        let mut tasks = tokio::task::JoinSet::new();
        for id in ids {
            let (this, id) = (Arc::clone(self), id.clone());
            tasks.spawn(async move {
                let answer = this.status(&id).await;
                (id, answer)
            });
        }
        while let Ok(Some(Ok((id, answer)))) =
            tokio::time::timeout_at(deadline, tasks.join_next()).await
        {
            answers.insert(id, answer);
        }
        answers
    }

    /// One user's status now, from the cache or from Okta (the client must exist).
    async fn status(&self, okta_id: &str) -> Result<LookedUp, String> {
        if let Some((answer, when)) = self.cache.lock().await.get(okta_id)
            && when.elapsed() < CACHE_TTL
        {
            return Ok(*answer);
        }
        // The answer is true as of Okta's lastUpdated; without it, as of now minus a clock skew, so that our
        // clock running ahead of Okta's cannot let it outrank a deactivation published just after.
        let asked = Utc::now() - chrono::Duration::seconds(120);
        let client = self.client.get().ok_or("no Okta client")?;
        let user = client.user(okta_id).await.map_err(|e| e.to_string())?;
        if user.id != okta_id {
            return Err(format!("Okta answered for user {:?}", user.id));
        }
        let answer = LookedUp {
            status: status_from_okta(&user.status),
            at: user.last_updated.map_or(asked, |updated| {
                updated.min(asked + chrono::Duration::seconds(120))
            }),
        };
        self.cache
            .lock()
            .await
            .insert(okta_id.to_owned(), (answer, Instant::now()));
        Ok(answer)
    }
}
