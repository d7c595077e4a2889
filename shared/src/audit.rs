//! The audit trail: one record per change (or refusal, or failure), written as a row in the target's state
//! schema and as one JSON log line (`tracing`, target `audit`). Records never hold secrets.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    Refused,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub target: String,
    pub delivery_id: String,
    /// Okta event uuids that led to this change.
    pub event_uuids: Vec<String>,
    pub actor: String,
    pub okta_id: Option<String>,
    pub role: Option<String>,
    pub action: String,
    pub detail: Option<String>,
    pub outcome: Outcome,
    /// Since the delivery was received.
    pub duration_ms: f64,
}

/// Audit action of a user who is not entitled in Okta but keeps access (a refusal or a failed change).
pub const ACCESS_LEFT: &str = "access_left";

impl AuditEntry {
    /// Whether this record must raise the alarm (an ERROR line): a change failed, or a user who is not
    /// entitled keeps access.
    pub fn alarms(&self) -> bool {
        self.outcome == Outcome::Failed || self.action == ACCESS_LEFT
    }

    /// Write the JSON log line: INFO, or ERROR when it [alarms](Self::alarms).
    pub fn log(&self) {
        let uuids = self.event_uuids.join(",");
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    target: "audit",
                    db_target = %self.target,
                    delivery_id = %self.delivery_id,
                    event_uuids = %uuids,
                    actor = %self.actor,
                    okta_user = self.okta_id.as_deref().unwrap_or(""),
                    role = self.role.as_deref().unwrap_or(""),
                    action = %self.action,
                    detail = self.detail.as_deref().unwrap_or(""),
                    outcome = self.outcome.as_str(),
                    duration_ms = self.duration_ms,
                    "audit"
                )
            };
        }
        if self.alarms() {
            line!(error);
        } else {
            line!(info);
        }
    }
}
