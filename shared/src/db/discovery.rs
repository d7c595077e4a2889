//! Finding a target's readers through the RDS API (`discover_readers = true`): the read replicas of the
//! writer instance, or the reader instances of its Aurora cluster. The answer is cached for a few
//! minutes; when the API cannot be reached, the last answer is used (and logged), so a throttled or
//! unreachable API never makes the writer's revocation wait.

use std::time::{Duration, Instant};

use aws_sdk_rds::Client;

use crate::config::TargetConfig;
use crate::error::SyncError;

/// How long an answer of the RDS API is trusted.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// What the readers are found from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A DB instance: its read replicas.
    Instance(String),
    /// An Aurora cluster: its members that are not the writer.
    Cluster(String),
    /// Named in the config (`rds_identifier`): a cluster if the API knows a cluster by that name, else an
    /// instance.
    Either(String),
}

impl Source {
    /// From the target's `rds_identifier`, or from its host when that is an RDS endpoint:
    /// `<instance>.<hash>.<region>.rds.amazonaws.com` or `<cluster>.cluster-<hash>.<region>.rds.amazonaws.com`.
    pub fn for_target(cfg: &TargetConfig) -> Result<Self, String> {
        if let Some(id) = &cfg.rds_identifier {
            return Ok(Self::Either(id.clone()));
        }
        let host = cfg.host.to_ascii_lowercase();
        let labels: Vec<&str> = host.split('.').collect();
        let is_rds =
            host.ends_with(".rds.amazonaws.com") || host.ends_with(".rds.amazonaws.com.cn");
        match labels.as_slice() {
            [id, kind, ..]
                if is_rds && kind.starts_with("cluster-") && !kind.starts_with("cluster-ro-") =>
            {
                Ok(Self::Cluster((*id).to_owned()))
            }
            [id, kind, ..]
                if is_rds && !kind.starts_with("cluster-") && !kind.starts_with("proxy-") =>
            {
                Ok(Self::Instance((*id).to_owned()))
            }
            _ => Err(format!(
                "{:?} is not an RDS instance or Aurora cluster endpoint: name the instance or cluster in \
                 rds_identifier",
                cfg.host
            )),
        }
    }
}

/// The RDS API client, what to ask it about, and the last answer.
#[derive(Debug)]
pub struct Discovery {
    client: Client,
    source: Source,
    cached: Option<(Instant, Vec<(String, u16)>)>,
}

impl Discovery {
    pub fn new(client: Client, source: Source) -> Self {
        Self {
            client,
            source,
            cached: None,
        }
    }

    /// The readers' `(host, port)`: the cached answer if fresh, else the API's; on an API failure the last
    /// answer if there is one.
    pub async fn readers(&mut self) -> Result<Vec<(String, u16)>, SyncError> {
        if let Some((at, readers)) = &self.cached
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(readers.clone());
        }
        match self.ask().await {
            Ok(readers) => {
                self.cached = Some((Instant::now(), readers.clone()));
                Ok(readers)
            }
            Err(e) => match &self.cached {
                Some((_, readers)) => {
                    tracing::warn!(error = %e, "reader discovery failed; using the last answer");
                    Ok(readers.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn ask(&self) -> Result<Vec<(String, u16)>, SyncError> {
        let instances = match &self.source {
            Source::Instance(id) => self.replicas_of(id).await?,
            Source::Cluster(id) => self
                .cluster_readers(id)
                .await?
                .ok_or_else(|| SyncError::permanent(format!("no Aurora cluster {id:?}")))?,
            Source::Either(id) => match self.cluster_readers(id).await? {
                Some(readers) => readers,
                None => self.replicas_of(id).await?,
            },
        };
        let mut endpoints = Vec::new();
        for id in instances {
            if let Some(endpoint) = self.endpoint_of(&id).await? {
                endpoints.push(endpoint);
            }
        }
        endpoints.sort();
        Ok(endpoints)
    }

    /// The reader instances of a cluster, or `None` if there is no such cluster.
    async fn cluster_readers(&self, id: &str) -> Result<Option<Vec<String>>, SyncError> {
        let answer = self
            .client
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await;
        let clusters = match answer {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_db_cluster_not_found_fault()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(api_error("DescribeDBClusters", e)),
        };
        Ok(Some(
            clusters
                .db_clusters()
                .iter()
                .flat_map(|c| c.db_cluster_members())
                .filter(|m| m.is_cluster_writer() != Some(true))
                .filter_map(|m| m.db_instance_identifier().map(str::to_owned))
                .collect(),
        ))
    }

    /// The read replicas of an instance (cross-region replicas, named by ARN, are not reachable from the
    /// function's VPC and are left out).
    async fn replicas_of(&self, id: &str) -> Result<Vec<String>, SyncError> {
        let out = self
            .client
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| api_error("DescribeDBInstances", e))?;
        Ok(out
            .db_instances()
            .iter()
            .flat_map(|i| i.read_replica_db_instance_identifiers())
            .filter(|r| !r.starts_with("arn:"))
            .cloned()
            .collect())
    }

    /// An instance's endpoint, unless it has none or cannot hold sessions (being created, deleted, stopped).
    async fn endpoint_of(&self, id: &str) -> Result<Option<(String, u16)>, SyncError> {
        let out = match self
            .client
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_db_instance_not_found_fault()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(api_error("DescribeDBInstances", e)),
        };
        Ok(out.db_instances().iter().find_map(|i| {
            let status = i.db_instance_status().unwrap_or_default();
            if matches!(status, "creating" | "deleting" | "stopped" | "stopping") {
                return None;
            }
            let endpoint = i.endpoint()?;
            let port = u16::try_from(endpoint.port()?).ok()?;
            Some((endpoint.address()?.to_owned(), port))
        }))
    }
}

fn api_error(call: &str, e: impl std::error::Error + Send + Sync + 'static) -> SyncError {
    let text = aws_sdk_rds::error::DisplayErrorContext(&e).to_string();
    SyncError::caused_by(
        crate::error::ErrorKind::Transient,
        format!("RDS {call}: {text}"),
        e,
    )
}
