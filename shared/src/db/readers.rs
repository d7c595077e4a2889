//! Read replicas and Aurora readers of a target. Role and account changes reach them by replication, but
//! sessions are per server: an offboarding ends the role's sessions on each reader too, in parallel with
//! the writer. A reader gets its own kept connection as the master (same credentials, same database, same
//! pinned session options), made when it is first needed, so an unreachable reader never delays the
//! writer's work; each engine's connection type says how it ends sessions ([`SessionLink`]).

use std::future::Future;

use crate::config::TargetConfig;
use crate::converge::{SessionCounts, SessionsEnded};
use crate::db::discovery::Discovery;
use crate::error::SyncError;
use crate::secrets::Secrets;

/// An engine's kept connection, as far as a reader needs one.
pub trait SessionLink: Default + Send {
    /// Signal and poll the sessions of `roles` until none is left (bounded): connect first if there is no
    /// working connection, and once more if the kept one turns out closed.
    fn end_sessions(
        &mut self,
        cfg: &TargetConfig,
        secrets: &Secrets,
        roles: &[String],
    ) -> impl Future<Output = Result<SessionCounts, SyncError>> + Send;
}

/// One reader and its kept connection.
#[derive(Debug)]
pub struct Reader<L> {
    /// `host:port`, as reported in audits and logs.
    endpoint: String,
    /// The target's settings pointed at the reader.
    cfg: TargetConfig,
    link: L,
}

impl<L: SessionLink> Reader<L> {
    /// The target's configured readers.
    pub fn all(target: &TargetConfig) -> Vec<Self> {
        target
            .reader_endpoints()
            .into_iter()
            .map(|(host, port)| Self::new(target, host, port))
            .collect()
    }

    pub fn new(target: &TargetConfig, host: String, port: u16) -> Self {
        let endpoint = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let cfg = TargetConfig {
            name: format!("{} (reader {endpoint})", target.name),
            host,
            port: Some(port),
            readers: Vec::new(),
            ..target.clone()
        };
        Self {
            endpoint,
            cfg,
            link: L::default(),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn end_sessions(
        &mut self,
        secrets: &Secrets,
        roles: &[String],
    ) -> Result<SessionCounts, SyncError> {
        self.link.end_sessions(&self.cfg, secrets, roles).await
    }
}

/// A target's readers: the configured ones, and those the RDS API names (`discover_readers`).
#[derive(Debug)]
pub struct Readers<L> {
    target: TargetConfig,
    list: Vec<Reader<L>>,
    discovery: Option<Discovery>,
}

impl<L: SessionLink> Readers<L> {
    pub fn new(target: &TargetConfig, discovery: Option<Discovery>) -> Self {
        Self {
            target: target.clone(),
            list: Reader::all(target),
            discovery,
        }
    }

    /// With discovery, bring the list up to date: readers that appeared are added, those gone dropped,
    /// and the kept connections of the others stay.
    async fn refresh(&mut self) -> Result<(), SyncError> {
        let Some(discovery) = &mut self.discovery else {
            return Ok(());
        };
        let mut wanted = self.target.reader_endpoints();
        for endpoint in discovery.readers().await? {
            if !wanted.contains(&endpoint) {
                wanted.push(endpoint);
            }
        }
        let mut kept: Vec<Reader<L>> = Vec::with_capacity(wanted.len());
        for (host, port) in wanted {
            match self
                .list
                .iter()
                .position(|r| r.cfg.host == host && r.cfg.port() == port)
            {
                Some(i) => kept.push(self.list.swap_remove(i)),
                None => kept.push(Reader::new(&self.target, host, port)),
            }
        }
        self.list = kept;
        Ok(())
    }

    /// `host:port` of each reader known now.
    pub fn endpoints(&self) -> Vec<&str> {
        self.list.iter().map(Reader::endpoint).collect()
    }
}

/// End the sessions of `roles` on the writer (`writer`, the engine's own kill) and on every reader, all at
/// once. `Err` only if the writer failed; a reader that failed (or a discovery that found none to try) is
/// reported in [`SessionsEnded::unreached`] and logged.
pub async fn end_sessions_everywhere<L: SessionLink>(
    target: &str,
    writer: impl Future<Output = Result<SessionCounts, SyncError>>,
    readers: &mut Readers<L>,
    secrets: &Secrets,
    roles: &[String],
) -> Result<SessionsEnded, SyncError> {
    let on_readers = async {
        let discovered = readers.refresh().await;
        let results = futures_util::future::join_all(
            readers
                .list
                .iter_mut()
                .map(|reader| reader.end_sessions(secrets, roles)),
        )
        .await;
        let mut outcomes: Vec<(String, Result<SessionCounts, SyncError>)> = readers
            .list
            .iter()
            .map(|r| r.endpoint.clone())
            .zip(results)
            .collect();
        if let Err(e) = discovered {
            outcomes.push(("(discovery)".to_owned(), Err(e)));
        }
        outcomes
    };
    let (writer, on_readers) = futures_util::future::join(writer, on_readers).await;
    let mut ended = SessionsEnded::default();
    ended.add(writer?);
    for (reader, result) in on_readers {
        match result {
            Ok(counts) => ended.add(counts),
            Err(e) => {
                tracing::warn!(db_target = %target, %reader, error = %e,
                    "sessions on a reader not ended");
                ended.unreached.push((reader, e));
            }
        }
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct NoLink;

    impl SessionLink for NoLink {
        async fn end_sessions(
            &mut self,
            _: &TargetConfig,
            _: &Secrets,
            _: &[String],
        ) -> Result<SessionCounts, SyncError> {
            Ok(SessionCounts::new())
        }
    }

    #[test]
    fn a_reader_is_the_target_pointed_elsewhere() {
        let config = crate::config::Config::parse(
            r#"
[hook]
secret_arn = "arn:aws:secretsmanager:eu-west-1:1:secret:h"
[[targets]]
name = "app"
engine = "postgres"
host = "db.example"
port = 5433
database = "app"
secret_arn = "arn:aws:secretsmanager:eu-west-1:1:secret:m"
readers = ["r1.example", "[fd00::1]:6000"]
"#,
            std::path::Path::new("t.toml"),
        )
        .expect("config");
        let readers: Vec<Reader<NoLink>> = Reader::all(&config.targets[0]);
        let shown: Vec<(&str, &str, u16, &str, usize)> = readers
            .iter()
            .map(|r| {
                (
                    r.endpoint(),
                    r.cfg.host.as_str(),
                    r.cfg.port(),
                    r.cfg.database(),
                    r.cfg.readers.len(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("r1.example:5433", "r1.example", 5433, "app", 0),
                ("[fd00::1]:6000", "fd00::1", 6000, "app", 0)
            ]
        );
        assert_eq!(readers[0].cfg.secret_arn, config.targets[0].secret_arn);
    }
}
