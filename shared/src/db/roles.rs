//! What every engine needs to know about a target's roles, and the start-up rules that hold for every
//! engine: which roles are mapped, which are protected or never touched, and that mapped roles exist and
//! are not privileged unless a grant allows it.

use std::collections::BTreeSet;

use crate::config::{Config, TargetConfig};
use crate::error::SyncError;
use crate::plan::Mapping;

/// A target's roles, fixed at start.
#[derive(Debug, Clone)]
pub struct TargetRoles {
    pub mapped: BTreeSet<String>,
    /// Never created, adopted or altered unless ours; logins never map onto these names.
    pub protected: Vec<String>,
    /// The engine's and RDS's own roles and ours: never altered, even if they carry our marker.
    pub untouchable: Vec<String>,
    /// `(grant index, roles, allow_privileged)` for the start-up checks.
    pub grants: Vec<(usize, Vec<String>, bool)>,
}

impl TargetRoles {
    /// `system`: the engine's own roles (RDS's, the server's); `own`: this tool's (marker, IAM role).
    pub fn new(cfg: &TargetConfig, config: &Config, system: &[&str], own: &[&str]) -> Self {
        let mapped = Mapping::new(config, &cfg.name).managed_roles();
        let untouchable: Vec<String> = system.iter().chain(own).map(|r| (*r).to_owned()).collect();
        let mut protected = untouchable.clone();
        protected.extend(cfg.protected_roles.iter().cloned());
        protected.extend(mapped.iter().cloned());
        let grants = config
            .grants
            .iter()
            .enumerate()
            .filter(|(_, g)| g.target == cfg.name)
            .map(|(i, g)| (i, g.roles.clone(), g.allow_privileged))
            .collect();
        Self {
            mapped,
            protected,
            untouchable,
            grants,
        }
    }

    /// Refuse a target whose mapped roles do not all exist (`exists`), or where a grant maps a privileged
    /// role (`privileged`, described as `what`) without `allow_privileged`.
    pub fn check(
        &self,
        target: &str,
        exists: impl Fn(&str) -> bool,
        privileged: impl Fn(&str) -> bool,
        what: &str,
    ) -> Result<(), SyncError> {
        let missing: Vec<&String> = self.mapped.iter().filter(|r| !exists(r)).collect();
        if !missing.is_empty() {
            return Err(SyncError::permanent(format!(
                "target {target}: mapped roles do not exist: {missing:?}"
            )));
        }
        for (index, roles, allow_privileged) in &self.grants {
            if *allow_privileged {
                continue;
            }
            if let Some(role) = roles.iter().find(|r| privileged(r)) {
                return Err(SyncError::permanent(format!(
                    "grants[{index}]: role {role:?} is privileged ({what}); set allow_privileged = true on that \
                     grant if this is intended"
                )));
            }
        }
        Ok(())
    }
}

/// Connect as the master with `connect`, reading the credentials from Secrets Manager; when the database
/// rejects the password (a rotation), read the secret again, bypassing the cache, and try once more.
pub async fn connect_as_master<T, F, Fut>(
    cfg: &TargetConfig,
    secrets: &crate::secrets::Secrets,
    connect: F,
) -> Result<T, SyncError>
where
    F: Fn(crate::secrets::MasterCredentials) -> Fut,
    Fut: Future<Output = Result<T, SyncError>>,
{
    let read = |refresh| async move {
        secrets
            .master_credentials(&cfg.secret_arn, refresh)
            .await
            .map_err(|e| SyncError::transient(e.to_string()))
    };
    match connect(read(false).await?).await {
        Err(first) if first.is_auth() => {
            tracing::warn!(target = %cfg.name, error = %first, "master password rejected; re-reading the secret");
            connect(read(true).await?).await
        }
        other => other,
    }
}
