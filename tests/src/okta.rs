//! Builders for Okta deliveries and Lambda Function URL requests, as Okta and AWS send them.

use lambda_http::Request;
use serde_json::{Value, json};

/// An Okta user in tests: stable id and login.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub login: String,
}

impl User {
    pub fn new(id: &str, login: &str) -> Self {
        Self {
            id: id.into(),
            login: login.into(),
        }
    }

    fn target(&self) -> Value {
        json!({ "id": self.id, "type": "User", "alternateId": self.login, "displayName": "Test User", "detailEntry": null })
    }
}

fn group_target(id: &str, name: &str) -> Value {
    json!({ "id": id, "type": "UserGroup", "alternateId": "unknown", "displayName": name, "detailEntry": null })
}

/// One System Log event. `second` orders events in time (published = 2026-03-02T14:00:00Z + second).
pub fn event(
    event_type: &str,
    user: Option<&User>,
    group: Option<(&str, &str)>,
    second: u32,
    uuid: &str,
) -> Value {
    let mut targets = Vec::new();
    if let Some(u) = user {
        targets.push(u.target());
    }
    if let Some((id, name)) = group {
        targets.push(group_target(id, name));
    }
    let published = chrono::DateTime::parse_from_rfc3339("2026-03-02T14:00:00.000Z").expect("time")
        + chrono::Duration::milliseconds(i64::from(second) * 1000);
    json!({
        "uuid": uuid, "published": published.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "eventType": event_type, "version": "0", "severity": "INFO", "displayMessage": event_type,
        "actor": { "id": "00u1adm1nXyZ0h8", "type": "User", "alternateId": "it.admin@acme.com", "displayName": "IT Admin" },
        "outcome": { "result": "SUCCESS", "reason": null },
        "target": targets,
        "transaction": { "type": "WEB", "id": "tx", "detail": {} }
    })
}

pub fn delivery(event_id: &str, events: Vec<Value>) -> String {
    json!({
        "eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
        "source": "https://acme.okta.com/api/v1/eventHooks/who8k2LmNpQr4StUv0h8",
        "eventId": event_id, "eventTime": "2026-03-02T15:00:00.000Z", "contentType": "application/json",
        "data": { "events": events }
    })
    .to_string()
}

/// A Function URL (payload 2.0) invocation, parsed by lambda_http exactly as in Lambda.
pub fn request(method: &str, headers: &[(&str, &str)], body: Option<&str>) -> Request {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect();
    let mut e = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "", "headers": headers,
        "requestContext": { "accountId": "anonymous", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc", "http": { "method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.20",
            "userAgent": "Okta-Integrations" }, "requestId": "req", "routeKey": "$default", "stage": "$default",
            "time": "02/Mar/2026:15:00:00 +0000", "timeEpoch": 1772463600000u64 },
        "isBase64Encoded": false
    });
    if let Some(b) = body {
        e["body"] = Value::String(b.to_owned());
    }
    lambda_http::request::from_str(&e.to_string()).expect("lambda event")
}

/// A whole Function URL event (JSON text) carrying a POST of `body` with the demo secret, as the Lambda
/// service hands it to the runtime.
pub fn request_event_json(body: &str) -> String {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": { "authorization": crate::DEMO_SECRET, "content-type": "application/json" },
        "requestContext": { "accountId": "anonymous", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc", "http": { "method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.20",
            "userAgent": "Okta-Integrations" }, "requestId": "req", "routeKey": "$default", "stage": "$default",
            "time": "02/Mar/2026:15:00:00 +0000", "timeEpoch": 1772463600000u64 },
        "body": body, "isBase64Encoded": false
    })
    .to_string()
}

/// A POST with the demo secret.
pub fn post(body: &str) -> Request {
    request(
        "POST",
        &[
            ("authorization", crate::DEMO_SECRET),
            ("content-type", "application/json"),
        ],
        Some(body),
    )
}

/// The response body as JSON.
pub fn body_json(response: &lambda_http::Response<lambda_http::Body>) -> Value {
    match response.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).expect("JSON body"),
        other => panic!("unexpected body {other:?}"),
    }
}

/// Read a sample from `events/` (a whole Lambda event).
pub fn sample(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parse a Lambda event text into a request.
pub fn from_sample(text: &str) -> Request {
    lambda_http::request::from_str(text).expect("sample parses as a Lambda HTTP event")
}
