//! Okta event-hook deliveries: the CloudEvents envelope and the System Log events inside it.
//!
//! Parsing is strict about the envelope (a body that is not an Okta delivery is rejected whole) and lenient
//! about each event: unknown fields are ignored, `actor`/`target` may be null, targets are selected by `type`
//! (never by position), and an event that cannot be understood is counted and skipped rather than failing the
//! other events of the batch.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

pub const ENVELOPE_EVENT_TYPE: &str = "com.okta.event_hook";

/// Why a body is not an Okta delivery.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("body is not valid JSON")]
    NotJson,
    #[error("body is not an Okta event hook delivery: {0}")]
    NotOkta(&'static str),
}

/// One verified delivery, with every event classified.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The envelope `eventId` (dedup key of the delivery).
    pub event_id: String,
    pub events: Vec<OktaEvent>,
    pub ignored: Vec<Ignored>,
}

/// An event we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OktaEvent {
    pub uuid: String,
    pub published: DateTime<Utc>,
    pub kind: EventKind,
    /// `alternateId` (or id) of the actor, for the audit trail.
    pub actor: String,
    pub user: Option<UserRef>,
    pub group: Option<GroupRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Deactivate,
    Suspend,
    Unsuspend,
    Activate,
    DeleteInitiated,
    MembershipAdd,
    MembershipRemove,
    GroupDelete,
    ProfileUpdate,
}

impl EventKind {
    pub fn from_event_type(t: &str) -> Option<Self> {
        Some(match t {
            "user.lifecycle.deactivate" => Self::Deactivate,
            "user.lifecycle.suspend" => Self::Suspend,
            "user.lifecycle.unsuspend" => Self::Unsuspend,
            "user.lifecycle.activate" => Self::Activate,
            "user.lifecycle.delete.initiated" => Self::DeleteInitiated,
            "group.user_membership.add" => Self::MembershipAdd,
            "group.user_membership.remove" => Self::MembershipRemove,
            "group.lifecycle.delete" => Self::GroupDelete,
            "user.account.update_profile" => Self::ProfileUpdate,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deactivate => "user.lifecycle.deactivate",
            Self::Suspend => "user.lifecycle.suspend",
            Self::Unsuspend => "user.lifecycle.unsuspend",
            Self::Activate => "user.lifecycle.activate",
            Self::DeleteInitiated => "user.lifecycle.delete.initiated",
            Self::MembershipAdd => "group.user_membership.add",
            Self::MembershipRemove => "group.user_membership.remove",
            Self::GroupDelete => "group.lifecycle.delete",
            Self::ProfileUpdate => "user.account.update_profile",
        }
    }

    fn needs_user(self) -> bool {
        self != Self::GroupDelete
    }

    fn needs_group(self) -> bool {
        matches!(
            self,
            Self::MembershipAdd | Self::MembershipRemove | Self::GroupDelete
        )
    }
}

/// The Okta user an event is about: the stable id (`00u…`) and the login at the time of the event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserRef {
    pub id: String,
    pub login: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupRef {
    pub id: String,
    pub name: String,
}

/// An event we do not act on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub uuid: Option<String>,
    pub event_type: Option<String>,
    pub reason: IgnoreReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    UnhandledType,
    NotSuccess,
    Malformed,
    /// A profile update whose `debugData.changedAttributes` does not list `login`.
    NotALoginChange,
}

impl IgnoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnhandledType => "unhandled_type",
            Self::NotSuccess => "outcome_not_success",
            Self::Malformed => "malformed",
            Self::NotALoginChange => "not_a_login_change",
        }
    }
}

/// The domain Okta gives a deleted user's login (`<userId>@deleted.invalid`, OKTA.md §7). Such a login is
/// never a rename target: a deleted user's role keeps its name.
pub const DELETED_LOGIN_DOMAIN: &str = "@deleted.invalid";

/// Whether a login is the placeholder Okta sets when it deletes a user.
pub fn is_deleted_login(login: &str) -> bool {
    login.len() >= DELETED_LOGIN_DOMAIN.len()
        && login
            .get(login.len() - DELETED_LOGIN_DOMAIN.len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(DELETED_LOGIN_DOMAIN))
}

#[derive(Deserialize)]
struct RawEnvelope {
    #[serde(rename = "eventType")]
    event_type: Option<String>,
    #[serde(rename = "eventId")]
    event_id: Option<String>,
    data: Option<RawData>,
}

#[derive(Deserialize)]
struct RawData {
    events: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct RawEvent {
    uuid: String,
    published: DateTime<Utc>,
    #[serde(rename = "eventType")]
    event_type: String,
    #[serde(default)]
    actor: Option<RawActor>,
    #[serde(default)]
    outcome: Option<RawOutcome>,
    #[serde(default)]
    target: Option<Vec<Option<RawTarget>>>,
    #[serde(default, rename = "debugContext")]
    debug_context: Option<Value>,
}

impl RawEvent {
    /// `debugContext.debugData.changedAttributes` (comma-separated), when it is a string. Okta says
    /// `debugData` is not a contract: anything else counts as absent.
    fn changed_attributes(&self) -> Option<&str> {
        self.debug_context
            .as_ref()?
            .get("debugData")?
            .get("changedAttributes")?
            .as_str()
    }
}

#[derive(Deserialize)]
struct RawActor {
    id: Option<String>,
    #[serde(rename = "alternateId")]
    alternate_id: Option<String>,
}

#[derive(Deserialize)]
struct RawOutcome {
    result: Option<String>,
}

#[derive(Deserialize)]
struct RawTarget {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "alternateId")]
    alternate_id: Option<String>,
    #[serde(rename = "displayName")]
    display_name: Option<String>,
}

/// Okta ids are short alphanumeric strings (`00u…`, `00g…`); anything else is not an Okta id.
pub fn is_okta_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An Okta group id (`00g…`). Groups are mapped by id only: a group's name can be taken by anyone who can
/// create or rename a group (or a directory Okta imports from).
pub fn is_group_id(id: &str) -> bool {
    id.starts_with("00g") && is_okta_id(id)
}

/// Parse a delivery body.
pub fn parse_delivery(body: &[u8]) -> Result<Delivery, EnvelopeError> {
    let raw: RawEnvelope = match serde_json::from_slice::<Value>(body) {
        Err(_) => return Err(EnvelopeError::NotJson),
        Ok(v) if !v.is_object() => return Err(EnvelopeError::NotOkta("not a JSON object")),
        Ok(v) => serde_json::from_value(v)
            .map_err(|_| EnvelopeError::NotOkta("unexpected envelope field types"))?,
    };
    if raw.event_type.as_deref() != Some(ENVELOPE_EVENT_TYPE) {
        return Err(EnvelopeError::NotOkta(
            "eventType is not com.okta.event_hook",
        ));
    }
    let event_id = raw
        .event_id
        .filter(|id| !id.trim().is_empty() && id.len() <= 200 && !id.contains('\0'));
    let Some(event_id) = event_id else {
        return Err(EnvelopeError::NotOkta("missing eventId"));
    };
    let Some(values) = raw.data.and_then(|d| d.events) else {
        return Err(EnvelopeError::NotOkta("missing data.events"));
    };
    let mut events = Vec::new();
    let mut ignored = Vec::new();
    for value in values {
        match classify(value) {
            Ok(event) => events.push(event),
            Err(i) => ignored.push(i),
        }
    }
    Ok(Delivery {
        event_id,
        events,
        ignored,
    })
}

fn classify(value: Value) -> Result<OktaEvent, Ignored> {
    let uuid_hint = value.get("uuid").and_then(Value::as_str).map(str::to_owned);
    let type_hint = value
        .get("eventType")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let malformed = |uuid: Option<String>, t: Option<String>| Ignored {
        uuid,
        event_type: t,
        reason: IgnoreReason::Malformed,
    };
    let raw: RawEvent = serde_json::from_value(value)
        .map_err(|_| malformed(uuid_hint.clone(), type_hint.clone()))?;
    if raw.uuid.is_empty() || raw.uuid.len() > 100 || raw.uuid.contains('\0') {
        return Err(malformed(None, Some(raw.event_type)));
    }
    let ignore = |reason| Ignored {
        uuid: Some(raw.uuid.clone()),
        event_type: Some(raw.event_type.clone()),
        reason,
    };
    let Some(kind) = EventKind::from_event_type(&raw.event_type) else {
        return Err(ignore(IgnoreReason::UnhandledType));
    };
    if raw.outcome.as_ref().and_then(|o| o.result.as_deref()) != Some("SUCCESS") {
        return Err(ignore(IgnoreReason::NotSuccess));
    }
    if kind == EventKind::ProfileUpdate
        && raw
            .changed_attributes()
            .is_some_and(|attrs| !attrs.split(',').any(|a| a.trim() == "login"))
    {
        return Err(ignore(IgnoreReason::NotALoginChange));
    }
    let targets: Vec<RawTarget> = raw
        .target
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    let of_type = |t: &str| targets.iter().find(|x| x.kind.as_deref() == Some(t));
    let user = of_type("User").and_then(|t| {
        let id = t.id.as_deref().filter(|id| is_okta_id(id))?;
        let login = t
            .alternate_id
            .as_deref()
            .filter(|l| !l.is_empty() && !l.contains('\0'))?;
        Some(UserRef {
            id: id.to_owned(),
            login: login.to_owned(),
        })
    });
    let group = of_type("UserGroup").and_then(|t| {
        let id = t.id.as_deref().filter(|id| is_okta_id(id))?;
        // PostgreSQL text cannot hold NUL; the name is informational, so such a name is dropped.
        let name = t
            .display_name
            .clone()
            .filter(|n| !n.contains('\0'))
            .unwrap_or_default();
        Some(GroupRef {
            id: id.to_owned(),
            name,
        })
    });
    if (kind.needs_user() && user.is_none()) || (kind.needs_group() && group.is_none()) {
        return Err(ignore(IgnoreReason::Malformed));
    }
    let actor = raw
        .actor
        .and_then(|a| a.alternate_id.or(a.id))
        .map(|a| a.replace('\0', ""))
        .unwrap_or_else(|| "unknown".to_owned());
    Ok(OktaEvent {
        uuid: raw.uuid,
        published: raw.published,
        kind,
        actor,
        user,
        group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(events: Value) -> Vec<u8> {
        json!({
            "eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
            "source": "https://acme.okta.com/api/v1/eventHooks/who8k2LmNpQr4StUv0h8",
            "eventId": "5d2c3b1e-8f7a-4c6d-9e0b-1a2b3c4d5e6f", "eventTime": "2026-03-02T14:05:11.482Z",
            "contentType": "application/json", "data": { "events": events }
        })
        .to_string()
        .into_bytes()
    }

    fn user_target() -> Value {
        json!({ "id": "00u7jdoeAbCdEf0h8", "type": "User", "alternateId": "jane.doe@acme.com", "displayName": "Jane Doe" })
    }

    fn group_target() -> Value {
        json!({ "id": "00g1abcdEFGHijkl0h8", "type": "UserGroup", "alternateId": "unknown", "displayName": "eng-prod-access" })
    }

    fn event(t: &str, targets: Value) -> Value {
        json!({ "uuid": format!("u-{t}"), "published": "2026-03-02T14:05:10.903Z", "eventType": t, "version": "0",
                "actor": { "id": "00u1adm1nXyZ0h8", "type": "User", "alternateId": "it.admin@acme.com" },
                "outcome": { "result": "SUCCESS", "reason": null }, "target": targets, "someFutureField": {"x": 1} })
    }

    #[test]
    fn every_handled_type_is_parsed_from_every_event_of_the_batch() {
        let user_only = [
            "user.lifecycle.deactivate",
            "user.lifecycle.suspend",
            "user.lifecycle.unsuspend",
            "user.lifecycle.activate",
            "user.lifecycle.delete.initiated",
            "user.account.update_profile",
        ];
        let mut events: Vec<Value> = user_only
            .iter()
            .map(|t| event(t, json!([user_target()])))
            .collect();
        // Group targets first: order must not matter.
        events.push(event(
            "group.user_membership.add",
            json!([group_target(), user_target()]),
        ));
        events.push(event(
            "group.user_membership.remove",
            json!([user_target(), group_target()]),
        ));
        events.push(event("group.lifecycle.delete", json!([group_target()])));
        let d = parse_delivery(&envelope(Value::Array(events))).unwrap();
        assert_eq!(d.events.len(), 9);
        assert!(d.ignored.is_empty());
        for e in &d.events {
            assert_eq!(e.uuid, format!("u-{}", e.kind.as_str()));
            assert_eq!(e.actor, "it.admin@acme.com");
        }
        let add = d
            .events
            .iter()
            .find(|e| e.kind == EventKind::MembershipAdd)
            .unwrap();
        assert_eq!(add.user.as_ref().unwrap().login, "jane.doe@acme.com");
        assert_eq!(add.group.as_ref().unwrap().name, "eng-prod-access");
        let del = d
            .events
            .iter()
            .find(|e| e.kind == EventKind::GroupDelete)
            .unwrap();
        assert!(del.user.is_none());
    }

    #[test]
    fn non_success_unknown_and_malformed_events_are_counted_not_applied() {
        let mut failed = event("user.lifecycle.deactivate", json!([user_target()]));
        failed["outcome"]["result"] = json!("FAILURE");
        let mut no_outcome = event("user.lifecycle.deactivate", json!([user_target()]));
        no_outcome["outcome"] = Value::Null;
        let unknown = event("user.session.start", json!([user_target()]));
        let null_target = event("group.user_membership.add", Value::Null);
        let missing_group = event("group.user_membership.add", json!([user_target(), null]));
        let bad_id = event(
            "user.lifecycle.deactivate",
            json!([{ "id": "00u'; drop", "type": "User", "alternateId": "x" }]),
        );
        let no_uuid = json!({ "eventType": "user.lifecycle.deactivate", "published": "2026-03-02T14:05:10Z" });
        let bad_time = json!({ "uuid": "x", "eventType": "user.lifecycle.deactivate", "published": "yesterday" });
        let mut null_actor = event("user.lifecycle.suspend", json!([user_target()]));
        null_actor["actor"] = Value::Null;
        let d = parse_delivery(&envelope(json!([
            failed,
            no_outcome,
            unknown,
            null_target,
            missing_group,
            bad_id,
            no_uuid,
            bad_time,
            null_actor,
            42
        ])))
        .unwrap();
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.events[0].actor, "unknown");
        let reasons: Vec<IgnoreReason> = d.ignored.iter().map(|i| i.reason).collect();
        use IgnoreReason::*;
        assert_eq!(
            reasons,
            vec![
                NotSuccess,
                NotSuccess,
                UnhandledType,
                Malformed,
                Malformed,
                Malformed,
                Malformed,
                Malformed,
                Malformed
            ]
        );
    }

    #[test]
    fn a_profile_update_is_a_rename_only_if_login_changed() {
        let with = |attrs: Value| {
            let mut e = event("user.account.update_profile", json!([user_target()]));
            e["debugContext"] = json!({ "debugData": { "changedAttributes": attrs } });
            e
        };
        let mut no_debug = event("user.account.update_profile", json!([user_target()]));
        no_debug["debugContext"] = Value::Null;
        let d = parse_delivery(&envelope(json!([
            with(json!("login")),
            with(json!("title,login")),
            with(json!("lastName,firstName")),
            with(json!("loginHint")),
            with(json!(42)),
            no_debug,
        ])))
        .unwrap();
        assert_eq!(d.events.len(), 4, "{:?}", d.ignored);
        assert_eq!(
            d.ignored.iter().map(|i| i.reason).collect::<Vec<_>>(),
            vec![IgnoreReason::NotALoginChange; 2]
        );
    }

    #[test]
    fn okta_s_deleted_logins_are_recognized() {
        assert!(is_deleted_login("00u7jdoeAbCdEf0h8@deleted.invalid"));
        assert!(is_deleted_login("x@DELETED.INVALID"));
        assert!(!is_deleted_login("jane@deleted.invalid.acme.com"));
        assert!(!is_deleted_login("deleted.invalid"));
        assert!(!is_deleted_login("é"));
    }

    #[test]
    fn envelope_errors() {
        assert_eq!(
            parse_delivery(b"not json").unwrap_err(),
            EnvelopeError::NotJson
        );
        assert_eq!(parse_delivery(b"").unwrap_err(), EnvelopeError::NotJson);
        assert!(matches!(
            parse_delivery(b"[1,2]"),
            Err(EnvelopeError::NotOkta(_))
        ));
        assert!(matches!(
            parse_delivery(b"{\"eventType\":\"other\"}"),
            Err(EnvelopeError::NotOkta(_))
        ));
        let mut v: Value = serde_json::from_slice(&envelope(json!([]))).unwrap();
        v.as_object_mut().unwrap().remove("eventId");
        assert!(matches!(
            parse_delivery(v.to_string().as_bytes()),
            Err(EnvelopeError::NotOkta(_))
        ));
        let mut v: Value = serde_json::from_slice(&envelope(json!([]))).unwrap();
        v["data"] = json!({"events": "nope"});
        assert!(matches!(
            parse_delivery(v.to_string().as_bytes()),
            Err(EnvelopeError::NotOkta(_))
        ));
        // An empty batch is a valid (if pointless) delivery.
        assert!(
            parse_delivery(&envelope(json!([])))
                .unwrap()
                .events
                .is_empty()
        );
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let keys = prop::sample::select(vec![
            "eventType",
            "eventId",
            "data",
            "events",
            "uuid",
            "published",
            "outcome",
            "result",
            "target",
            "type",
            "id",
            "alternateId",
            "displayName",
            "actor",
            "x",
        ]);
        let strings = prop::sample::select(vec![
            "com.okta.event_hook",
            "SUCCESS",
            "User",
            "UserGroup",
            "00u1",
            "00g1",
            "group.user_membership.add",
            "user.lifecycle.deactivate",
            "2026-03-02T14:05:10.903Z",
            "",
            "\u{0}",
            "a\"b",
            "é🚀",
        ])
        .prop_map(String::from);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            strings.prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_delivery(&body);
        }

        #[test]
        fn parsing_arbitrary_json_never_panics_and_keeps_nul_out(v in json_value()) {
            if let Ok(d) = parse_delivery(v.to_string().as_bytes()) {
                proptest::prop_assert!(!d.event_id.contains('\0'));
            }
        }

        #[test]
        fn mutated_deliveries_never_panic_and_keep_nul_out(
            index in 0usize..9, field in proptest::sample::select(vec!["uuid", "published", "target", "actor", "outcome", "eventType"]),
            replacement in json_value(),
        ) {
            let events: Vec<Value> = (0..9).map(|i| {
                let mut e = event(["user.lifecycle.deactivate", "group.user_membership.add"][i % 2], json!([user_target(), group_target()]));
                e["uuid"] = json!(format!("u{i}"));
                e
            }).collect();
            let mut v: Value = serde_json::from_slice(&envelope(Value::Array(events))).unwrap();
            v["data"]["events"][index][field] = replacement;
            if let Ok(d) = parse_delivery(v.to_string().as_bytes()) {
                for e in d.events {
                    let strings = [Some(e.uuid), Some(e.actor), e.user.map(|u| u.login), e.group.map(|g| g.name)];
                    proptest::prop_assert!(strings.iter().flatten().all(|s| !s.contains('\0')));
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn hostile_strings_in_kept_fields_never_reach_the_database_with_nul(
            path in proptest::sample::select(vec![
                "/uuid", "/actor/alternateId", "/actor/id", "/target/0/alternateId", "/target/1/displayName", "/target/0/id",
            ]),
            value in "[a-z\u{0}'\";@é]{0,12}",
        ) {
            let mut e = event("group.user_membership.add", json!([user_target(), group_target()]));
            *e.pointer_mut(path).unwrap() = json!(value);
            if let Ok(d) = parse_delivery(&envelope(json!([e]))) {
                for e in d.events {
                    let strings = [Some(e.uuid), Some(e.actor), e.user.map(|u| u.login), e.group.map(|g| g.name)];
                    proptest::prop_assert!(strings.iter().flatten().all(|s| !s.contains('\0')));
                }
            }
        }
    }

    #[test]
    fn okta_ids_are_alphanumeric() {
        assert!(is_okta_id("00u7jdoeAbCdEf0h8"));
        assert!(!is_okta_id(""));
        assert!(!is_okta_id("00u-x"));
        assert!(!is_okta_id(&"a".repeat(65)));
    }
}
