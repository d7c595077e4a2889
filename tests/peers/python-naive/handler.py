"""What a user would write instead: a Python Lambda (boto3 + psycopg) doing the same job for one event type.
Used only as a side-by-side performance anchor (cold start, warm latency) under the same Runtime API emulator."""
import hmac, json, os, time
import boto3, psycopg
from psycopg import sql

_cfg = {}
for line in open(os.environ["BASELINE_CONFIG"]):
    k, _, v = line.strip().partition("=")
    _cfg[k] = v
_sm = boto3.client("secretsmanager")
_hook = json.loads(_sm.get_secret_value(SecretId=_cfg["hook_arn"])["SecretString"])
_db = json.loads(_sm.get_secret_value(SecretId=_cfg["db_arn"])["SecretString"])
_conn = None
_groups = json.loads(_cfg["groups"])


def _db_conn():
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(host="localhost", port=int(_cfg["port"]), dbname=_cfg.get("database", "app"), user=_db["username"],
                                password=_db["password"], sslmode="verify-full", sslrootcert=_cfg["ca"])
    return _conn


def handler(event, context):
    h = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    got = h.get("authorization", "").encode()
    if not any(hmac.compare_digest(got, s.encode()) for s in (_hook["current"], _hook["previous"])):
        return {"statusCode": 401, "body": ""}
    method = event["requestContext"]["http"]["method"]
    if method == "GET":
        return {"statusCode": 200, "headers": {"content-type": "application/json"},
                "body": json.dumps({"verification": h.get("x-okta-verification-challenge", "")})}
    body = json.loads(event.get("body") or "{}")
    conn = _db_conn()
    with conn.transaction():
        for ev in body["data"]["events"]:
            if ev["eventType"] != "group.user_membership.add" or ev["outcome"]["result"] != "SUCCESS":
                continue
            user = next(t for t in ev["target"] if t["type"] == "User")["alternateId"]
            grp = next(t for t in ev["target"] if t["type"] == "UserGroup")["id"]
            roles = _groups.get(grp)
            if not roles:
                continue
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user)))
            for r in ["rds_iam"] + roles:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(r), sql.Identifier(user)))
    return {"statusCode": 200, "body": json.dumps({"ok": True})}
