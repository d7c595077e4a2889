//! Errors of applying a delivery to a target, classified by what the caller should do about them. The
//! error that caused one (a driver's, an AWS SDK's) is kept as its source.

use std::sync::Arc;

/// What a caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The database or an AWS service is unreachable, overloaded, out of a resource, failing over or timed
    /// out: retry later (the retry worker does, then the dead-letter queue keeps it).
    Transient,
    /// The database rejected the master credentials (PostgreSQL 28P01 / 28000, MySQL 1045).
    Auth,
    /// Bad configuration or a state no retry can fix.
    Permanent,
}

/// What went wrong on a target, whether trying again later can help, and the underlying error.
#[derive(Debug, Clone)]
pub struct SyncError {
    kind: ErrorKind,
    context: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl SyncError {
    pub fn transient(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, context)
    }

    pub fn permanent(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, context)
    }

    pub fn auth(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, context)
    }

    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// An error of `kind` caused by `source`.
    pub fn caused_by(
        kind: ErrorKind,
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            context: context.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// An error of the kind a SQLSTATE classification gave.
    pub fn from_kind(
        kind: SqlStateKind,
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        let kind = match kind {
            SqlStateKind::Transient => ErrorKind::Transient,
            SqlStateKind::Auth => ErrorKind::Auth,
            SqlStateKind::Permanent => ErrorKind::Permanent,
        };
        Self::caused_by(kind, context, source)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    pub fn is_auth(&self) -> bool {
        self.kind == ErrorKind::Auth
    }
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind == ErrorKind::Transient {
            f.write_str("transient: ")?;
        }
        if self.kind == ErrorKind::Auth {
            f.write_str("authentication failed: ")?;
        }
        f.write_str(&self.context)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SyncError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// How a SQLSTATE (PostgreSQL) or an error number mapped to one (MySQL) is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlStateKind {
    Transient,
    Auth,
    Permanent,
}

/// Classify a SQLSTATE. Transient: the connection (class 08), insufficient resources (class 53: disk full,
/// out of memory, lock table exhausted, too many connections), operator intervention (57: shutdown,
/// cancel, crash recovery), system errors (58), serialization failures and deadlocks (40001, 40P01), lock
/// timeouts (55P03) and a read-only server (25006, a failover in progress). Resource errors must never be
/// dropped as permanent: they pass, and a later attempt succeeds.
pub fn classify_sqlstate(code: &str) -> SqlStateKind {
    match code {
        "28P01" | "28000" => SqlStateKind::Auth,
        "40001" | "40P01" | "55P03" | "25006" => SqlStateKind::Transient,
        _ if ["08", "53", "57", "58"]
            .iter()
            .any(|class| code.starts_with(class)) =>
        {
            SqlStateKind::Transient
        }
        _ => SqlStateKind::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_by_what_to_do_about_them() {
        use SqlStateKind::*;
        let table = [
            ("53200", Transient), // out of shared memory: the lock table is exhausted
            ("53100", Transient), // disk full
            ("53000", Transient),
            ("53300", Transient), // too many connections
            ("53400", Transient),
            ("08006", Transient),
            ("57014", Transient), // statement timeout / cancel
            ("57P01", Transient), // admin shutdown (failover)
            ("57P03", Transient), // cannot connect now (recovery)
            ("58030", Transient), // I/O error
            ("40001", Transient),
            ("40P01", Transient),
            ("55P03", Transient),
            ("25006", Transient),
            ("28P01", Auth),
            ("28000", Auth),
            ("42501", Permanent), // insufficient privilege
            ("42704", Permanent), // undefined object (a mapped role dropped)
            ("0LP01", Permanent), // invalid grant operation
            ("XX000", Permanent),
        ];
        for (code, kind) in table {
            assert_eq!(classify_sqlstate(code), kind, "{code}");
        }
    }

    #[test]
    fn errors_keep_their_source() {
        let io = std::io::Error::other("connection reset");
        let e = SyncError::caused_by(ErrorKind::Transient, "connect", io);
        assert!(e.is_transient());
        assert_eq!(e.to_string(), "transient: connect: connection reset");
        assert_eq!(
            std::error::Error::source(&e).map(ToString::to_string),
            Some("connection reset".into())
        );
    }
}
