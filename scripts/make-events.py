#!/usr/bin/env python3
"""Write events/*.json: Lambda Function URL (payload 2.0) envelopes carrying Okta event-hook requests.

Usable with `cargo lambda invoke okta-hook -F events/<name>.json`; the handler tests and `make demo` load
them too. The secret in the auth header is the demo secret `make demo` stores in its local Secrets
Manager; it is not a real credential. Numbered files replay as a story, in order.
Run from the repository root: python3 scripts/make-events.py
"""
import json, os

SECRET = "Bearer okta-rds-sync-demo-secret"
JANE = {"id": "00u7jdoeAbCdEf0h8", "type": "User", "alternateId": "jane.doe@acme.com", "displayName": "Jane Doe", "detailEntry": None}
JANE_RENAMED = dict(JANE, alternateId="jane.roe@acme.com", displayName="Jane Roe")
BOB = {"id": "00u9bsmithQrSt0h8", "type": "User", "alternateId": "bob.smith@acme.com", "displayName": "Bob Smith", "detailEntry": None}
READERS = {"id": "00g1abcdEFGHijkl0h8", "type": "UserGroup", "alternateId": "unknown", "displayName": "eng-prod-access", "detailEntry": None}
WRITERS = {"id": "00g2wrtrsQRSTuvw0h8", "type": "UserGroup", "alternateId": "unknown", "displayName": "eng-prod-writers", "detailEntry": None}
ADMIN = {"id": "00u1adm1nXyZ0h8", "type": "User", "alternateId": "it.admin@acme.com", "displayName": "IT Admin"}
counter = [0]

def event(event_type, targets, minute, display, debug=None, result="SUCCESS"):
    counter[0] += 1
    e = {
        "uuid": f"0a8b1c2d-0000-11f0-a000-{counter[0]:012d}",
        "published": f"2026-03-02T14:{minute:02d}:10.903Z",
        "eventType": event_type, "version": "0", "severity": "INFO", "displayMessage": display,
        "actor": ADMIN, "client": {"ipAddress": "203.0.113.10", "device": "Computer"},
        "outcome": {"result": result, "reason": None}, "target": targets,
        "transaction": {"type": "WEB", "id": f"ZcQx1b7f9k2Lr0{counter[0]:08d}", "detail": {}},
    }
    if debug:
        e["debugContext"] = {"debugData": debug}
    return e

def okta(events, n):
    return {
        "eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
        "source": "https://acme.okta.com/api/v1/eventHooks/who8k2LmNpQr4StUv0h8",
        "eventId": f"5d2c3b1e-8f7a-4c6d-9e0b-{n:012d}", "eventTime": "2026-03-02T15:00:00.000Z",
        "contentType": "application/json", "data": {"events": events},
    }

def lambda_url(method, body=None, headers=None):
    h = {"accept": "application/json", "content-type": "application/json", "host": "abc123.lambda-url.eu-west-1.on.aws",
         "user-agent": "Okta-Integrations", "x-forwarded-proto": "https", "x-okta-request-id": "reqId1"}
    h.update(headers if headers is not None else {"authorization": SECRET})
    e = {"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "", "headers": h,
         "requestContext": {"accountId": "anonymous", "apiId": "abc123", "domainName": "abc123.lambda-url.eu-west-1.on.aws",
                            "domainPrefix": "abc123", "http": {"method": method, "path": "/", "protocol": "HTTP/1.1",
                            "sourceIp": "203.0.113.20", "userAgent": "Okta-Integrations"},
                            "requestId": "c0ffee00-0000-4000-8000-000000000001", "routeKey": "$default", "stage": "$default",
                            "time": "02/Mar/2026:15:00:00 +0000", "timeEpoch": 1772463600000},
         "isBase64Encoded": False}
    if body is not None:
        e["body"] = body if isinstance(body, str) else json.dumps(body)
    return e

files = {}
files["challenge"] = lambda_url("GET", headers={"authorization": SECRET, "X-Okta-Verification-Challenge": "kCrDs2Rc8WUbS4Y0wD0_kYgJ3ZnVbmSxRb5Yt-x7"})
story = [
    ("01-group-membership-add", [event("group.user_membership.add", [JANE, READERS], 1, "Add user to group membership")]),
    ("02-batch", [
        event("group.user_membership.add", [WRITERS, BOB], 2, "Add user to group membership"),
        event("group.user_membership.add", [BOB, READERS], 2, "Add user to group membership"),
        event("user.session.start", [BOB], 2, "User login to Okta"),
        event("group.user_membership.add", [JANE, WRITERS], 3, "Add user to group membership"),
    ]),
    ("03-user-suspend", [event("user.lifecycle.suspend", [BOB], 4, "Suspend Okta user")]),
    ("04-user-unsuspend", [event("user.lifecycle.unsuspend", [BOB], 5, "Unsuspend Okta user")]),
    ("05-user-update-profile", [event("user.account.update_profile", [JANE_RENAMED], 6, "Update user profile for Okta",
                                      debug={"changedAttributes": "login,email,lastName"})]),
    ("06-group-membership-remove", [event("group.user_membership.remove", [JANE_RENAMED, WRITERS], 7, "Remove user from group membership")]),
    ("07-user-deactivate", [event("user.lifecycle.deactivate", [BOB], 8, "Deactivate Okta User")]),
    ("08-user-activate", [event("user.lifecycle.activate", [BOB], 9, "Activate Okta user")]),
    ("09-group-delete", [event("group.lifecycle.delete", [WRITERS], 10, "Delete Okta group")]),
    ("10-user-deactivate-jane", [event("user.lifecycle.deactivate", [JANE_RENAMED], 11, "Deactivate Okta User")]),
    ("11-user-delete-initiated", [event("user.lifecycle.delete.initiated", [JANE_RENAMED], 12, "Delete Okta user initiated")]),
]
for i, (name, events) in enumerate(story, start=1):
    files[name] = lambda_url("POST", okta(events, i))
files["unknown-event-type"] = lambda_url("POST", okta([event("user.session.start", [JANE], 13, "User login to Okta"),
                                                       event("user.lifecycle.deactivate", [BOB], 13, "Deactivate Okta User", result="FAILURE")], 90))
files["bad-auth"] = lambda_url("POST", okta([event("user.lifecycle.deactivate", [JANE], 14, "Deactivate Okta User")], 91),
                               headers={"authorization": "Bearer wrong-secret"})
files["missing-auth"] = lambda_url("POST", okta([event("user.lifecycle.deactivate", [JANE], 14, "Deactivate Okta User")], 92), headers={})
files["malformed-body"] = lambda_url("POST", '{"eventType": "com.okta.event_hook", "data": {"events": [')
files["not-okta-body"] = lambda_url("POST", {"hello": "world"})
files["wrong-method"] = lambda_url("PUT", okta([], 93))

os.makedirs("events", exist_ok=True)
for name, content in files.items():
    with open(f"events/{name}.json", "w") as f:
        json.dump(content, f, indent=2)
        f.write("\n")
print(f"wrote {len(files)} files to events/")
