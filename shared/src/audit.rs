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

impl AuditEntry {
    /// Write the JSON log line.
    pub fn log(&self) {
        let uuids = self.event_uuids.join(",");
        tracing::info!(
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
        );
    }
}
