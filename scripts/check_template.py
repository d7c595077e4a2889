#!/usr/bin/env python3
"""Check the security properties of template.yaml, so that a later edit cannot silently weaken them.

    check_template.py template.yaml              # exit 1 and list the problems, if any
    check_template.py --self-test template.yaml  # weaken the template in memory, one property at a time,
                                                 # and fail unless every weakening is caught

The template is read with cfn-lint's loader (short-form intrinsics such as !Ref become {"Ref": ...}).
"""
import copy
import json
import re
import sys

from cfnlint.decode import decode

ALLOWED_ACTIONS = {
    "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret", "kms:Decrypt", "kms:GenerateDataKey",
    "sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
}
# discover_readers: read-only, in this account and region, and only when the DiscoverReaders parameter asks for it.
RDS_DESCRIBE = {"rds:DescribeDBInstances", "rds:DescribeDBClusters"}
ALLOWED_ACTIONS |= RDS_DESCRIBE
RDS_DESCRIBE_RESOURCE = re.compile(
    r"^arn:\$\{AWS::Partition\}:rds:\$\{AWS::Region\}:\$\{AWS::AccountId\}:(db|cluster):\*$")
# People's rds-db:connect: one database user, named by the principal tag Username, on a listed database.
TAG_VARIABLE = "${aws:PrincipalTag/Username}"
PERSON_ACTIONS = {"rds-db:connect"} | RDS_DESCRIBE
DBUSER_RESOURCE = re.compile(
    r"^arn:\$\{AWS::Partition\}:rds-db:\$\{AWS::Region\}:\$\{AWS::AccountId\}:dbuser:"
    r"(\$\{Id\}|(db|cluster)-[A-Z0-9]+)/" + re.escape(TAG_VARIABLE) + "$")
# The two resources people connect with (name -> type), and the only properties each may have: extra managed
# policies, customer-managed policy references or a permissions boundary would grant (or change) more.
PERSON_RESOURCES = {"DatabaseConnectPermissionSet": "AWS::SSO::PermissionSet", "DatabaseConnectPolicy": "AWS::IAM::ManagedPolicy"}
PERSON_PROPERTIES = {
    "AWS::SSO::PermissionSet": {"InstanceArn", "Name", "Description", "SessionDuration", "InlinePolicy"},
    "AWS::IAM::ManagedPolicy": {"Description", "PolicyDocument"},
}
# The databases people may connect to: a list of resource ids, nothing that could be or contain a wildcard.
DATABASE_IDS_PARAMETER = "DatabaseResourceIds"
DATABASE_IDS_PATTERN = "^$|^(db|cluster)-[A-Z0-9]{1,64}(,(db|cluster)-[A-Z0-9]{1,64}){0,9}$"
DATABASE_SLOTS = 10


def database_id(i):
    """The template's Id of slot i: the i-th of DatabaseResourceIds padded with its first id to 10 slots."""
    padded = ",".join(["${DatabaseResourceIds}"] + ["${F}"] * (DATABASE_SLOTS - 1))
    first = {"Fn::Select": [0, {"Fn::Split": [",", {"Ref": DATABASE_IDS_PARAMETER}]}]}
    return {"Fn::Select": [i, {"Fn::Split": [",", {"Fn::Sub": [padded, {"F": first}]}]}]}


DATABASE_ID_EXPRESSIONS = {json.dumps(database_id(i), sort_keys=True) for i in range(DATABASE_SLOTS)}
# Whoever else the template grants rds-db actions to would connect as anyone (or as the tag says, unchecked).
POLICY_KEYS = {"PolicyDocument", "InlinePolicy"}
# Identity Center's attributes for access control: defined here, they would replace the Username that Okta's
# SAML assertion passes on as the session tag.
FORBIDDEN_TYPES = {"AWS::SSO::InstanceAccessControlAttributeConfiguration"}
# The secrets each function may read: nothing else.
SECRETS_OF = {
    "OktaHookFunction": {"HookSecretArn", "MasterSecretArns", "OktaApiSecretArn"},
    "RetryWorkerFunction": {"HookSecretArn", "MasterSecretArns", "OktaApiSecretArn"},
    "ReconcileFunction": {"OktaApiSecretArn", "MasterSecretArns"},
}


def walk(value):
    """Every (key, value) pair of the nested dicts in value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


def refs(value):
    """Every parameter or resource name referenced with Ref anywhere in value."""
    return {v for k, v in walk(value) if k == "Ref" and isinstance(v, str)}


def getatt_names(value):
    """Resources named in Fn::GetAtt anywhere in value."""
    return {(v[0] if isinstance(v, list) else str(v).split(".")[0]) for k, v in walk(value) if k == "Fn::GetAtt"}


def branches(value):
    """Both branches of Fn::If, or the value itself."""
    if isinstance(value, dict) and "Fn::If" in value:
        _, a, b = value["Fn::If"]
        return [x for x in (a, b) if not (isinstance(x, dict) and x.get("Ref") == "AWS::NoValue")]
    return [value]


def statements(policies):
    for policy in policies or []:
        for p in branches(policy):
            if isinstance(p, dict):
                for s in p.get("Statement", []):
                    yield from branches(s)


def as_list(v):
    return v if isinstance(v, list) else [v]


def resolve(value, truth):
    """value with every Fn::If resolved to its first branch (truth) or its second; AWS::NoValue -> None."""
    if isinstance(value, dict):
        if "Fn::If" in value:
            _, a, b = value["Fn::If"]
            return resolve(a if truth else b, truth)
        if value.get("Ref") == "AWS::NoValue":
            return None
    return value


def sub_text(value):
    """The text of a resource ARN: a plain string, or the template of Fn::Sub with its escapes (${!x})
    undone; None for anything else. An unescaped ${aws:...} inside Fn::Sub (which CloudFormation would
    try to resolve, and fail) is returned as None too."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        sub = value["Fn::Sub"]
        template = sub if isinstance(sub, str) else sub[0]
        if not isinstance(template, str) or "${aws:" in template:
            return None
        return template.replace("${!", "${")
    return None


def condition_refs(t, name, seen=None):
    """Every parameter a condition depends on, through the conditions it names."""
    seen = set() if seen is None else seen
    if name in seen:
        return set()
    seen.add(name)
    cond = t.get("Conditions", {}).get(name)
    out = refs(cond)
    for k, v in walk(cond):
        if k == "Condition" and isinstance(v, str):
            out |= condition_refs(t, v, seen)
    return out


def rds_describe_problems(t, name, policies):
    """A function's rds:Describe* statements: read-only, this account and region, DiscoverReaders only."""
    problems = []
    for policy in policies or []:
        cond = policy["Fn::If"][0] if isinstance(policy, dict) and "Fn::If" in policy else None
        for p in branches(policy):
            if not isinstance(p, dict):
                continue
            for s in p.get("Statement", []):
                for st in branches(s):
                    actions = set(as_list(st.get("Action")))
                    if not any(str(a).startswith("rds:") for a in actions):
                        continue
                    if cond is None or "DiscoverReaders" not in condition_refs(t, cond):
                        problems.append(f"{name}: rds:Describe* only when the DiscoverReaders parameter is true")
                    if not actions <= RDS_DESCRIBE:
                        problems.append(f"{name}: only read-only rds:Describe* actions may be allowed")
                    texts = [sub_text(r) for r in as_list(st.get("Resource"))]
                    if not texts or not all(x and RDS_DESCRIBE_RESOURCE.match(x) for x in texts):
                        problems.append(f"{name}: rds:Describe* only on this account's and region's db:* and cluster:*")
    return problems


def action_matches(pattern, action):
    """Whether an IAM action pattern (case-insensitive, * and ?) covers action."""
    if not isinstance(pattern, str):
        return True
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(rx, action.lower()) is not None


def policy_documents(value, key=None):
    """Every policy document in value: (document or None when it cannot be read, where it is)."""
    if isinstance(value, dict):
        if "Statement" in value:
            yield value, key
            return
        for k, v in value.items():
            if k in POLICY_KEYS and not isinstance(v, dict):
                doc = None
                if isinstance(v, str):
                    try:
                        doc = json.loads(v)
                    except ValueError:
                        pass
                yield (doc if isinstance(doc, dict) else None), k
            else:
                yield from policy_documents(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from policy_documents(v, key)


def other_rds_db_problems(t):
    """No resource but the two people connect with may grant rds-db actions (to anyone, on anything)."""
    problems = []
    for n, r in t.get("Resources", {}).items():
        if r.get("Type") in FORBIDDEN_TYPES:
            problems.append(f"{n}: {r.get('Type')} is not allowed (it would replace the Username attribute Okta passes on)")
        if PERSON_RESOURCES.get(n) == r.get("Type"):
            continue
        for doc, where in policy_documents(r.get("Properties", {})):
            if doc is None:
                problems.append(f"{n}: {where} must be a policy document in the template, not text")
                continue
            for s0 in as_list(doc.get("Statement", [])):
                for s in branches(s0):
                    if not isinstance(s, dict) or s.get("Effect") not in ("Allow", "Deny"):
                        problems.append(f"{n}: a statement that is not a plain Allow or Deny")
                        continue
                    if s.get("Effect") != "Allow":
                        continue
                    if "NotAction" in s:
                        if not any(isinstance(a, str) and action_matches(a, "rds-db:connect") for b in branches(s["NotAction"])
                                   for a in as_list(b)):
                            problems.append(f"{n}: Allow with NotAction grants rds-db:connect")
                        continue
                    for b in branches(s.get("Action")):
                        for a in as_list(b):
                            if action_matches(a, "rds-db:connect"):
                                problems.append(f"{n}: action {a!r} grants rds-db:connect: only "
                                                f"{' and '.join(PERSON_RESOURCES)} may")
    return problems


def dbuser_id_problems(n, r):
    """The ${Id} of a dbuser ARN must be the template's slot of DatabaseResourceIds, and nothing else."""
    sub = r.get("Fn::Sub") if isinstance(r, dict) else None
    text = sub if isinstance(sub, str) else sub[0] if isinstance(sub, list) and sub else None
    if not isinstance(text, str) or "${Id}" not in text:
        return []
    if not (isinstance(sub, list) and len(sub) == 2 and isinstance(sub[1], dict) and set(sub[1]) == {"Id"}
            and json.dumps(sub[1]["Id"], sort_keys=True) in DATABASE_ID_EXPRESSIONS):
        return [f"{n}: the Id of a dbuser ARN must be a slot of {DATABASE_IDS_PARAMETER} "
                f"(!Select [i, !Split [',', !Sub [...]]]) and the only variable of its Fn::Sub"]
    return []


def person_policy_problems(t):
    """The permission set and the managed policy people connect with: rds-db:connect only as the user
    named by the principal tag, on listed databases, with the tag required; describe actions read-only."""
    problems = []
    res = t.get("Resources", {})
    param = t.get("Parameters", {}).get(DATABASE_IDS_PARAMETER)
    if param is None or (param.get("Type") != "String" or param.get("AllowedPattern") != DATABASE_IDS_PATTERN
                              or param.get("Default", "") != ""):
        problems.append(f"{DATABASE_IDS_PARAMETER}: must be a String with Default '' and AllowedPattern "
                        f"{DATABASE_IDS_PATTERN!r} (resource ids only, no wildcards)")
    for n, typ in PERSON_RESOURCES.items():
        if n in res and res[n].get("Type") != typ:
            problems.append(f"{n}: must be an {typ}")
    docs = []
    for n, r in res.items():
        p = r.get("Properties", {})
        if r.get("Type") in PERSON_PROPERTIES:
            extra = set(p) - PERSON_PROPERTIES[r["Type"]]
            if extra:
                problems.append(f"{n}: properties {sorted(extra)} are not allowed "
                                f"(only {sorted(PERSON_PROPERTIES[r['Type']])})")
        if r.get("Type") == "AWS::SSO::PermissionSet" and p.get("InlinePolicy") is not None:
            docs.append((n, p["InlinePolicy"]))
        elif r.get("Type") == "AWS::IAM::ManagedPolicy":
            docs.append((n, p.get("PolicyDocument")))
    for n, doc in docs:
        if not isinstance(doc, dict):
            problems.append(f"{n}: the policy must be a document in the template, not text")
            continue
        connects = 0
        for s in (b for s0 in as_list(doc.get("Statement", [])) for b in branches(s0)):
            if not isinstance(s, dict) or s.get("Effect") not in ("Allow", "Deny"):
                problems.append(f"{n}: a statement that is not a plain Allow or Deny")
                continue
            actions = [str(a) for a in as_list(s.get("Action"))]
            if "NotAction" in s or "NotResource" in s:
                problems.append(f"{n}: NotAction / NotResource are not allowed")
            if s.get("Effect") != "Allow":
                continue
            for a in actions:
                if "*" in a or "?" in a:
                    problems.append(f"{n}: wildcard action {a!r} (rds-db:* or rds:*)")
                elif a not in PERSON_ACTIONS:
                    problems.append(f"{n}: action {a!r} is not allowed (rds-db:connect and read-only describe only)")
            if "rds-db:connect" in actions:
                connects += 1
                if set(actions) != {"rds-db:connect"}:
                    problems.append(f"{n}: rds-db:connect must be a statement of its own")
                resources = as_list(s.get("Resource"))
                if not resources:
                    problems.append(f"{n}: rds-db:connect without a Resource")
                for r in resources:
                    text = sub_text(r)
                    if text is None:
                        problems.append(f"{n}: rds-db:connect resource is not an ARN string (or ${{aws:...}} is not escaped as ${{!aws:...}} in Fn::Sub)")
                        continue
                    if "*" in json.dumps(r) or "?" in json.dumps(r) or text.endswith("/*"):
                        problems.append(f"{n}: rds-db:connect on a wildcard database or user: {text}")
                    if TAG_VARIABLE not in text:
                        problems.append(f"{n}: rds-db:connect resource must name the user by {TAG_VARIABLE}: {text}")
                    if not DBUSER_RESOURCE.match(text):
                        problems.append(f"{n}: rds-db:connect resource must be dbuser:<resource id>/{TAG_VARIABLE} in this account and region: {text}")
                    problems += dbuser_id_problems(n, r)
                null = ((s.get("Condition") or {}).get("Null") or {}).get("aws:PrincipalTag/Username")
                if null not in ("false", False):
                    problems.append(f"{n}: rds-db:connect must require the Username principal tag (Null: false)")
            elif set(actions) & RDS_DESCRIBE:
                texts = [sub_text(r) for r in as_list(s.get("Resource"))]
                if not texts or not all(x and RDS_DESCRIBE_RESOURCE.match(x) for x in texts):
                    problems.append(f"{n}: describe actions only on this account's and region's db:* and cluster:*")
        if connects == 0:
            problems.append(f"{n}: no rds-db:connect statement")
    return problems + other_rds_db_problems(t)


# The KMS key each service may use, and through which service only.
KMS_KEYS = {"SecretsKmsKeyArn": "secretsmanager", "QueueKmsKeyArn": "sqs"}
# Who may use the retry queue, whatever IAM policies elsewhere in the account allow.
QUEUE_SENDERS = {"OktaHookFunctionRole", "QueueOperatorRoleArn"}
QUEUE_CONSUMERS = {"RetryWorkerFunctionRole"}
CONSUME_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}
MESSAGE_BUDGET_ENV = "OKTA_RDS_SYNC_MESSAGE_BUDGET_MS"


def queue_policy_problems(res):
    """The retry queue's resource policy must deny sending to all but the hook (and an optional operator
    role) and consuming to all but the worker."""
    problems = []
    stmts = [s for r in res.values() if r.get("Type") == "AWS::SQS::QueuePolicy"
             and "RetryQueue" in refs(r.get("Properties", {}).get("Queues"))
             for s in r["Properties"].get("PolicyDocument", {}).get("Statement", [])]

    def allowed_principals(actions):
        for s in stmts:
            if (s.get("Effect") == "Deny" and s.get("Principal") == "*"
                    and set(as_list(s.get("Action"))) >= actions
                    and "RetryQueue" in getatt_names(s.get("Resource"))):
                cond = (s.get("Condition") or {}).get("ArnNotEquals", {}).get("aws:PrincipalArn")
                if cond is None:
                    continue
                names = set()
                for c in as_list(cond):
                    for b in branches(c):
                        if isinstance(b, dict) and set(b) == {"Fn::GetAtt"}:
                            names |= getatt_names(b)
                        elif isinstance(b, dict) and set(b) == {"Ref"}:
                            names.add(b["Ref"])
                        else:
                            names.add(json.dumps(b))
                return names
        return None

    purge_denied = any(s.get("Effect") == "Deny" and s.get("Principal") == "*"
                       and "sqs:PurgeQueue" in as_list(s.get("Action")) and not s.get("Condition")
                       and {"RetryQueue", "RetryDeadLetterQueue"} <= getatt_names(s.get("Resource"))
                       for s in stmts)
    if not purge_denied:
        problems.append("RetryQueue: its policy must deny sqs:PurgeQueue on both queues to everyone")
    senders = allowed_principals({"sqs:SendMessage"})
    if senders is None or not senders or not senders <= QUEUE_SENDERS:
        problems.append("RetryQueue: its policy must deny sqs:SendMessage to every principal but the hook's role")
    consumers = allowed_principals(CONSUME_ACTIONS)
    if consumers is None or not consumers or not consumers <= QUEUE_CONSUMERS:
        problems.append("RetryQueue: its policy must deny receiving and deleting to every principal but the worker's role")
    return problems


def check(t):
    problems = []
    res = t.get("Resources", {})
    functions = {n: r for n, r in res.items() if r.get("Type") == "AWS::Serverless::Function"}
    if not functions:
        problems.append("no AWS::Serverless::Function")
    for name, fn in functions.items():
        p = fn.get("Properties", {})
        meta = fn.get("Metadata", {})
        if meta.get("BuildMethod") != "rust-cargolambda":
            problems.append(f"{name}: Metadata.BuildMethod must be rust-cargolambda")
        if p.get("Runtime") != "provided.al2023" or p.get("Handler") != "bootstrap":
            problems.append(f"{name}: Runtime provided.al2023 with Handler bootstrap required")
        if p.get("Architectures") != ["arm64"]:
            problems.append(f"{name}: Architectures must be [arm64]")
        if "ReservedConcurrentExecutions" not in p:
            problems.append(f"{name}: ReservedConcurrentExecutions must be set (bounds database connections)")
        timeout = p.get("Timeout")
        limit = {"OktaHookFunction": 30, "ReconcileFunction": 900}.get(name, 120)
        if not isinstance(timeout, int) or not 3 <= timeout <= limit:
            problems.append(f"{name}: Timeout must be between 3 and {limit} s")
        for ev in (p.get("Events") or {}).values():
            if ev.get("Type") == "SQS":
                queue = getatt_names(ev.get("Properties", {}).get("Queue"))
                qprops = [res[q].get("Properties", {}) for q in queue if q in res]
                if any(qp.get("VisibilityTimeout", 30) < 6 * (timeout or 0) for qp in qprops):
                    problems.append(f"{name}: queue VisibilityTimeout must be at least 6x the function timeout")
                if "ReportBatchItemFailures" not in (ev.get("Properties", {}).get("FunctionResponseTypes") or []):
                    problems.append(f"{name}: SQS events must report batch item failures")
                budget = ((p.get("Environment") or {}).get("Variables") or {}).get(MESSAGE_BUDGET_ENV)
                batch = ev.get("Properties", {}).get("BatchSize", 10)
                if not isinstance(budget, int) or not isinstance(batch, int) or \
                        batch * budget / 1000 + 5 > (timeout or 0):
                    problems.append(f"{name}: BatchSize x {MESSAGE_BUDGET_ENV} (+5 s) must fit in the timeout")
        vpc = p.get("VpcConfig") or {}
        if not vpc.get("SubnetIds") or not vpc.get("SecurityGroupIds"):
            problems.append(f"{name}: must run in the VPC (VpcConfig with subnets and security groups)")
        log_group = (p.get("LoggingConfig") or {}).get("LogGroup")
        if not log_group or not refs(log_group) & set(res):
            problems.append(f"{name}: LoggingConfig.LogGroup must be a log group of this stack")
        url = p.get("FunctionUrlConfig")
        if url is not None:
            if name != "OktaHookFunction":
                problems.append(f"{name}: only the Okta hook (which authenticates each request) may have a Function URL")
            elif url.get("AuthType") != "NONE":
                problems.append(f"{name}: the Okta hook URL must be AuthType NONE (Okta cannot sign requests)")
        if any(isinstance(x, str) for x in p.get("Policies", []) or []):
            problems.append(f"{name}: managed policies by name are not allowed; use explicit statements")
        if any(not isinstance(b, dict) or "Statement" not in b for x in as_list(p.get("Policies") or [])
               for b in branches(x) if not isinstance(b, str)):
            problems.append(f"{name}: SAM policy templates are not allowed; use explicit statements")
        for s in statements(p.get("Policies")):
            if s.get("Effect") != "Allow":
                continue
            for action in as_list(s.get("Action")):
                if action not in ALLOWED_ACTIONS:
                    problems.append(f"{name}: action {action!r} is not allowed")
            resource = s.get("Resource")
            if set(as_list(s.get("Action"))) <= RDS_DESCRIBE:
                continue
            if resource is None or "*" in json.dumps(resource):
                problems.append(f"{name}: statement {s.get('Sid')} has a wildcard or missing Resource")
            actions = set(as_list(s.get("Action")))
            if actions & {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}:
                if not refs(resource) or not refs(resource) <= SECRETS_OF.get(name, set()):
                    problems.append(f"{name}: may read only {sorted(SECRETS_OF.get(name, set()))}")
            if any(a.startswith("sqs:") for a in actions) and refs(resource) | getatt_names(resource) != {"RetryQueue"}:
                problems.append(f"{name}: SQS actions only on the retry queue")
            if any(a.startswith("kms:") for a in actions):
                via = json.dumps(s.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService", ""))
                keys = refs(resource)
                if len(keys) != 1 or not keys <= set(KMS_KEYS) or f"{KMS_KEYS[next(iter(keys))]}." not in via:
                    problems.append(f"{name}: KMS use must be limited to one key and its service (kms:ViaService)")
        problems += rds_describe_problems(t, name, p.get("Policies"))
        alarms = [r["Properties"] for r in res.values() if r.get("Type") == "AWS::CloudWatch::Alarm"]
        for metric in ("Errors", "Throttles"):
            if not any(a.get("MetricName") == metric and name in refs(a.get("Dimensions")) for a in alarms):
                problems.append(f"{name}: no alarm on {metric}")
    standalone = [(n, r["Properties"]) for n, r in res.items() if r.get("Type") == "AWS::EC2::SecurityGroupEgress"]
    for gname, g in res.items():
        if g.get("Type") != "AWS::EC2::SecurityGroup":
            continue
        egress = g.get("Properties", {}).get("SecurityGroupEgress")
        if egress is None:
            problems.append(f"{gname}: explicit egress rules required (the default allows everything)")
            continue
        egress = egress + [rule for _, rule in standalone if gname in refs(rule.get("GroupId"))]
        for rule in egress:
            for r in branches(rule):
                if r.get("IpProtocol") is None and r.get("Ref") == "AWS::NoValue":
                    continue
                proto, lo, hi = r.get("IpProtocol"), r.get("FromPort"), r.get("ToPort")
                if str(proto) in ("-1", "all"):
                    problems.append(f"{gname}: egress to all protocols")
                if r.get("CidrIp") == "0.0.0.0/0" and not (proto == "tcp" and lo == 443 and hi == 443):
                    problems.append(f"{gname}: egress to 0.0.0.0/0 other than tcp/443")
                if r.get("CidrIpv6") == "::/0":
                    problems.append(f"{gname}: egress to ::/0")
                if proto == "tcp" and lo != hi:
                    problems.append(f"{gname}: egress to a port range {lo}-{hi}")
                if proto == "tcp" and lo == 443 and not (r.get("CidrIp") == "0.0.0.0/0" or refs(r.get("DestinationSecurityGroupId"))):
                    problems.append(f"{gname}: egress on 443 must go to the endpoints' security group or through NAT")
                if proto == "tcp" and lo != 443 and "DatabaseSecurityGroupId" not in refs(r):
                    problems.append(f"{gname}: egress on port {lo} must go to the database security group only")
    for lname, lg in res.items():
        if lg.get("Type") == "AWS::Logs::LogGroup" and "RetentionInDays" not in lg.get("Properties", {}):
            problems.append(f"{lname}: log group without retention")
    queues = {n: r for n, r in res.items() if r.get("Type") == "AWS::SQS::Queue"}
    for qname, q in queues.items():
        qp = q.get("Properties", {})
        for truth in (True, False):
            sse, kms = resolve(qp.get("SqsManagedSseEnabled"), truth), resolve(qp.get("KmsMasterKeyId"), truth)
            if not (sse is True or kms is not None):
                problems.append(f"{qname}: queue without encryption at rest")
                break
    if "RetryQueue" in queues:
        problems += queue_policy_problems(res)
        if "RedrivePolicy" not in queues["RetryQueue"].get("Properties", {}):
            problems.append("RetryQueue: no dead-letter queue (RedrivePolicy)")
        alarms = [r["Properties"] for r in res.values() if r.get("Type") == "AWS::CloudWatch::Alarm"]
        if not any(a.get("Namespace") == "AWS/SQS" and "RetryDeadLetterQueue" in getatt_names(a.get("Dimensions")) for a in alarms):
            problems.append("RetryDeadLetterQueue: no alarm on its depth")
    for ename, e in res.items():
        if e.get("Type") != "AWS::EC2::VPCEndpoint":
            continue
        ep = e.get("Properties", {})
        if ep.get("PrivateDnsEnabled") is not True or refs(ep.get("SecurityGroupIds")) != {"EndpointSecurityGroup"}:
            problems.append(f"{ename}: VPC endpoints need private DNS and the endpoints' security group")
        if ".rds" in json.dumps(ep.get("ServiceName")) and "DiscoverReaders" not in condition_refs(t, e.get("Condition")):
            problems.append(f"{ename}: the RDS API endpoint only when the DiscoverReaders parameter is true")
    problems += person_policy_problems(t)
    if "OktaHookUrl" not in t.get("Outputs", {}):
        problems.append("Outputs: OktaHookUrl (to paste into Okta) is missing")
    text = json.dumps({k: v for k, v in t.items() if k != "Parameters"})
    if re.search(r"(?<![0-9])[0-9]{12}(?![0-9])", text):
        problems.append("a 12-digit account id is hard-coded")
    return problems


def weakenings():
    """(description, mutation) pairs; each must be caught by check()."""
    def fn(t):
        return t["Resources"]["OktaHookFunction"]["Properties"]

    def secret_statement(t):
        return next(s for s in statements(fn(t)["Policies"]) if s.get("Sid") == "ReadOwnSecrets")

    def kms_statement(t):
        return next(s for s in statements(fn(t)["Policies"]) if s.get("Sid") == "DecryptSecrets")

    def worker(t):
        return t["Resources"]["RetryWorkerFunction"]["Properties"]

    def queue_statement(sid):
        def find(t):
            doc = t["Resources"]["RetryQueuePolicy"]["Properties"]["PolicyDocument"]
            return next(s for s in doc["Statement"] if s.get("Sid") == sid)
        return find

    def drop_queue_statement(sid):
        def m(t):
            doc = t["Resources"]["RetryQueuePolicy"]["Properties"]["PolicyDocument"]
            doc["Statement"] = [s for s in doc["Statement"] if s.get("Sid") != sid]
        return m

    def egress(t):
        return t["Resources"]["FunctionSecurityGroup"]["Properties"]["SecurityGroupEgress"]

    def drop_alarm(metric):
        def m(t):
            for n in [n for n, r in t["Resources"].items() if r.get("Properties", {}).get("MetricName") == metric]:
                del t["Resources"][n]
        return m

    def person_doc(resource):
        def find(t):
            p = t["Resources"][resource]["Properties"]
            return p.get("InlinePolicy") or p.get("PolicyDocument")
        return find

    def person_statement(resource, sid):
        def find(t):
            return next(s for s in person_doc(resource)(t)["Statement"] if s.get("Sid") == sid)
        return find

    def dbuser_template(resource, template):
        def m(t):
            first = person_statement(resource, "ConnectAsOwnDatabaseUser")(t)["Resource"][0]
            first["Fn::Sub"][0] = template
        return m

    def with_parameter(name, mutate):
        def m(t):
            t["Parameters"][name] = {"Type": "String", "Default": "*"}
            mutate(t)
        return m

    connect_ps = person_statement("DatabaseConnectPermissionSet", "ConnectAsOwnDatabaseUser")
    find_ps = person_statement("DatabaseConnectPermissionSet", "FindDatabases")
    connect_mp = person_statement("DatabaseConnectPolicy", "ConnectAsOwnDatabaseUser")
    arn = "arn:${AWS::Partition}:rds-db:${AWS::Region}:${AWS::AccountId}:dbuser:"

    def describe_statement(function):
        def find(t):
            policies = t["Resources"][function]["Properties"]["Policies"]
            return next(s for s in statements(policies) if s.get("Sid") == "DiscoverReaders")
        return find

    def unconditional_describe(t):
        policies = fn(t)["Policies"]
        i = next(i for i, p in enumerate(policies) if isinstance(p, dict) and "Fn::If" in p
                 and p["Fn::If"][0] == "DiscoverReadersEnabled")
        policies[i] = policies[i]["Fn::If"][1]

    people = [
        ("person may connect as any user", dbuser_template("DatabaseConnectPermissionSet", arn + "${Id}/*")),
        ("person may connect to any database as any user", dbuser_template("DatabaseConnectPermissionSet", arn + "*/*")),
        ("person may connect to any database", dbuser_template("DatabaseConnectPermissionSet", arn + "*/${!aws:PrincipalTag/Username}")),
        ("user not named by the principal tag", dbuser_template("DatabaseConnectPermissionSet", arn + "${Id}/jane")),
        ("another principal tag", dbuser_template("DatabaseConnectPermissionSet", arn + "${Id}/${!aws:PrincipalTag/Team}")),
        ("principal tag not escaped in Fn::Sub", dbuser_template("DatabaseConnectPermissionSet", arn + "${Id}/${aws:PrincipalTag/Username}")),
        ("another account's database", dbuser_template("DatabaseConnectPermissionSet", "arn:aws:rds-db:eu-west-1:*:dbuser:${Id}/${!aws:PrincipalTag/Username}")),
        ("wildcard resource id", lambda t: connect_ps(t)["Resource"][3]["Fn::Sub"][1].update(Id="*")),
        ("rds-db:* in the permission set", lambda t: connect_ps(t).update(Action="rds-db:*")),
        ("rds-db:connect beside another action", lambda t: connect_ps(t).update(Action=["rds-db:connect", "rds:DescribeDBInstances"])),
        ("tag presence not required", lambda t: connect_ps(t).pop("Condition")),
        ("describe action not read-only", lambda t: find_ps(t)["Action"].append("rds:ModifyDBInstance")),
        ("rds:Describe* wildcard for people", lambda t: find_ps(t).update(Action="rds:Describe*")),
        ("rds:* for people", lambda t: find_ps(t).update(Action="rds:*")),
        ("people describe anything", lambda t: find_ps(t).update(Resource="*")),
        ("managed policy: any user", dbuser_template("DatabaseConnectPolicy", arn + "*/*")),
        ("managed policy: user not named by the tag", dbuser_template("DatabaseConnectPolicy", arn + "${Id}/admin")),
        ("managed policy: rds-db:*", lambda t: connect_mp(t).update(Action=["rds-db:*"])),
        ("managed policy: NotResource", lambda t: connect_mp(t).update(NotResource=connect_mp(t).pop("Resource"))),
        ("managed policy: any action", lambda t: person_statement("DatabaseConnectPolicy", "FindDatabases")(t).update(Action="*")),
        # Extra policies or properties on the permission set or the managed policy.
        ("permission set with an AWS managed policy", lambda t: t["Resources"]["DatabaseConnectPermissionSet"]["Properties"].update(ManagedPolicies=["arn:aws:iam::aws:policy/AdministratorAccess"])),
        ("permission set with a customer managed policy", lambda t: t["Resources"]["DatabaseConnectPermissionSet"]["Properties"].update(CustomerManagedPolicyReferences=[{"Name": "Admin"}])),
        ("permission set with a permissions boundary", lambda t: t["Resources"]["DatabaseConnectPermissionSet"]["Properties"].update(PermissionsBoundary={"ManagedPolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess"})),
        ("permission set with another property", lambda t: t["Resources"]["DatabaseConnectPermissionSet"]["Properties"].update(RelayStateType="https://example.com")),
        ("managed policy attached to a role", lambda t: t["Resources"]["DatabaseConnectPolicy"]["Properties"].update(Roles=["Admin"])),
        ("managed policy turned into an inline policy", lambda t: t["Resources"]["DatabaseConnectPolicy"].update(Type="AWS::IAM::Policy")),
        ("permission set policy as text", lambda t: t["Resources"]["DatabaseConnectPermissionSet"]["Properties"].update(InlinePolicy=json.dumps({"Statement": [{"Effect": "Allow", "Action": "rds-db:*", "Resource": "*"}]}))),
        ("conditional statement in the permission set", lambda t: person_doc("DatabaseConnectPermissionSet")(t)["Statement"].append({"Fn::If": ["HasIdentityCenter", {"Effect": "Allow", "Action": "rds-db:connect", "Resource": "*"}, {"Ref": "AWS::NoValue"}]})),
        # ? wildcards.
        ("? wildcard in the database id", lambda t: connect_ps(t)["Resource"][2]["Fn::Sub"][1].update(Id="db-????????????????")),
        ("? wildcard in the user name", dbuser_template("DatabaseConnectPermissionSet", arn + "${Id}/${!aws:PrincipalTag/Username}?")),
        ("? wildcard as the database", dbuser_template("DatabaseConnectPolicy", arn + "db-?/${!aws:PrincipalTag/Username}")),
        ("managed policy: ? wildcard in the database id", lambda t: connect_mp(t)["Resource"][9]["Fn::Sub"][1].update(Id="cluster-?")),
        ("rds-db:conn?ct", lambda t: connect_ps(t).update(Action="rds-db:conn?ct")),
        # The database id: the template's slot of DatabaseResourceIds, whose pattern admits no wildcard.
        ("database id from another parameter", with_parameter("SomeParam", lambda t: connect_ps(t)["Resource"][0]["Fn::Sub"][1].update(Id={"Ref": "SomeParam"}))),
        ("managed policy: database id from another parameter", with_parameter("SomeParam", lambda t: connect_mp(t)["Resource"][4]["Fn::Sub"][1].update(Id={"Ref": "SomeParam"}))),
        ("${Id} is a parameter, not the slot", with_parameter("Id", lambda t: connect_ps(t)["Resource"].__setitem__(0, {"Fn::Sub": connect_ps(t)["Resource"][0]["Fn::Sub"][0]}))),
        ("database id: the whole parameter", lambda t: connect_ps(t)["Resource"][1]["Fn::Sub"][1].update(Id={"Ref": "DatabaseResourceIds"})),
        ("database id: slot out of range", lambda t: connect_ps(t)["Resource"][1]["Fn::Sub"][1]["Id"]["Fn::Select"].__setitem__(0, 10)),
        ("database id: another padding", lambda t: connect_ps(t)["Resource"][1]["Fn::Sub"][1]["Id"]["Fn::Select"][1]["Fn::Split"][1]["Fn::Sub"][1].update(F="*")),
        ("a pseudo parameter overridden in Fn::Sub", lambda t: connect_ps(t)["Resource"][1]["Fn::Sub"][1].update({"AWS::AccountId": "*"})),
        ("database ids unconstrained", lambda t: t["Parameters"]["DatabaseResourceIds"].update(AllowedPattern=".*")),
        ("database ids may hold wildcards", lambda t: t["Parameters"]["DatabaseResourceIds"].update(AllowedPattern="^$|^(db|cluster)-[A-Z0-9*?]{1,64}(,(db|cluster)-[A-Z0-9*?]{1,64}){0,9}$")),
        ("database ids without a pattern", lambda t: t["Parameters"]["DatabaseResourceIds"].pop("AllowedPattern")),
        ("database ids parameter removed", lambda t: t["Parameters"].pop("DatabaseResourceIds")),
        ("database ids a list", lambda t: t["Parameters"]["DatabaseResourceIds"].update(Type="CommaDelimitedList")),
        # rds-db granted by anything else.
        ("rds-db:connect in an IAM policy", lambda t: t["Resources"].update(Extra={"Type": "AWS::IAM::Policy", "Properties": {"PolicyName": "x", "Roles": ["r"], "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "rds-db:connect", "Resource": "*"}]}}})),
        ("rds-db:* in another managed policy", lambda t: t["Resources"].update(Extra={"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": ["rds-db:*"], "Resource": {"Fn::Sub": "arn:${AWS::Partition}:rds-db:${AWS::Region}:${AWS::AccountId}:dbuser:db-ABC/jane"}}]}}})),
        ("copy of the managed policy", lambda t: t["Resources"].update(Extra=copy.deepcopy(t["Resources"]["DatabaseConnectPolicy"]))),
        ("copy of the permission set", lambda t: t["Resources"].update(Extra=copy.deepcopy(t["Resources"]["DatabaseConnectPermissionSet"]))),
        ("rds-db in a role's inline policy", lambda t: t["Resources"].update(Extra={"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}, "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "RDS-DB:Connect", "Resource": "*"}]}}]}})),
        ("role allowed everything", lambda t: t["Resources"].update(Extra={"Type": "AWS::IAM::Role", "Properties": {"Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}}]}})),
        ("role allowed all but S3", lambda t: t["Resources"].update(Extra={"Type": "AWS::IAM::Role", "Properties": {"Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}]}}]}})),
        ("rds-db in another permission set", lambda t: t["Resources"].update(Extra={"Type": "AWS::SSO::PermissionSet", "Properties": {"InstanceArn": {"Ref": "IdentityCenterInstanceArn"}, "Name": "x", "InlinePolicy": {"Statement": [{"Effect": "Allow", "Action": "rds-db:c*", "Resource": "*"}]}}})),
        ("rds-db in another permission set, as text", lambda t: t["Resources"].update(Extra={"Type": "AWS::SSO::PermissionSet", "Properties": {"InstanceArn": {"Ref": "IdentityCenterInstanceArn"}, "Name": "x", "InlinePolicy": json.dumps({"Statement": [{"Effect": "Allow", "Action": "rds-db:connect", "Resource": "*"}]})}})),
        ("rds-db in a function's policy", lambda t: fn(t)["Policies"].append({"Statement": [{"Effect": "Allow", "Action": "rds-db:connect", "Resource": {"Fn::Sub": "arn:${AWS::Partition}:rds-db:${AWS::Region}:${AWS::AccountId}:dbuser:db-ABC/app"}}]})),
        ("SAM policy template on a function", lambda t: fn(t)["Policies"].append({"RDSFullAccessPolicy": {}})),
        ("Identity Center attributes for access control", lambda t: t["Resources"].update(Extra={"Type": "AWS::SSO::InstanceAccessControlAttributeConfiguration", "Properties": {"InstanceArn": {"Ref": "IdentityCenterInstanceArn"}, "AccessControlAttributes": [{"Key": "Username", "Value": {"Source": ["${path:userName}"]}}]}})),
        ("hook describes anything", lambda t: describe_statement("OktaHookFunction")(t).update(Resource="*")),
        ("hook may modify databases", lambda t: describe_statement("OktaHookFunction")(t)["Action"].append("rds:ModifyDBInstance")),
        ("reconcile has rds:*", lambda t: describe_statement("ReconcileFunction")(t).update(Action="rds:*")),
        ("describe without DiscoverReaders", unconditional_describe),
        ("RDS endpoint without DiscoverReaders", lambda t: t["Resources"]["RdsEndpoint"].update(Condition="CreateEndpoints")),
        ("RDS endpoint without private DNS", lambda t: t["Resources"]["RdsEndpoint"]["Properties"].update(PrivateDnsEnabled=False)),
    ]

    return [
        ("egress to everything", lambda t: egress(t).append({"IpProtocol": "-1", "CidrIp": "0.0.0.0/0"})),
        ("egress 0.0.0.0/0 on the database port", lambda t: egress(t)[0].update(CidrIp="0.0.0.0/0")),
        ("egress port range", lambda t: egress(t).append({"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "CidrIp": "10.0.0.0/8"})),
        ("endpoint egress opened to a CIDR", lambda t: t["Resources"]["FunctionToEndpointsEgress"]["Properties"].update(FromPort=0, CidrIp="10.0.0.0/8")),
        ("no egress rules (default allow-all)", lambda t: t["Resources"]["FunctionSecurityGroup"]["Properties"].pop("SecurityGroupEgress")),
        ("secrets readable everywhere", lambda t: secret_statement(t).update(Resource="*")),
        ("secrets:* action", lambda t: secret_statement(t).update(Action="secretsmanager:*")),
        ("extra action", lambda t: secret_statement(t)["Action"].append("rds-db:connect")),
        ("another secret readable", lambda t: secret_statement(t).update(Resource={"Fn::Sub": "arn:aws:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:other"})),
        ("kms without ViaService", lambda t: kms_statement(t).pop("Condition")),
        ("managed policy by name", lambda t: fn(t)["Policies"].append("SecretsManagerReadWrite")),
        ("URL with IAM auth (Okta cannot sign)", lambda t: fn(t)["FunctionUrlConfig"].update(AuthType="AWS_IAM")),
        ("out of the VPC", lambda t: fn(t).pop("VpcConfig")),
        ("unbounded concurrency", lambda t: fn(t).pop("ReservedConcurrentExecutions")),
        ("x86_64", lambda t: fn(t).update(Architectures=["x86_64"])),
        ("no Errors alarm", drop_alarm("Errors")),
        ("no Throttles alarm", drop_alarm("Throttles")),
        ("log retention removed", lambda t: t["Resources"]["OktaHookLogGroup"]["Properties"].pop("RetentionInDays")),
        ("account id hard-coded", lambda t: fn(t)["Environment"]["Variables"].update(X="123456789012")),
        ("URL output removed", lambda t: t["Outputs"].pop("OktaHookUrl")),
        ("queue unencrypted", lambda t: t["Resources"]["RetryQueue"]["Properties"].pop("SqsManagedSseEnabled")),
        ("no DLQ", lambda t: t["Resources"]["RetryQueue"]["Properties"].pop("RedrivePolicy")),
        ("no DLQ depth alarm", lambda t: t["Resources"].pop("DeadLetterQueueAlarm")),
        ("hook may send anywhere", lambda t: next(s for s in statements(fn(t)["Policies"]) if s.get("Sid") == "QueueDeliveries").update(Resource="*")),
        ("visibility shorter than processing", lambda t: t["Resources"]["RetryQueue"]["Properties"].update(VisibilityTimeout=30)),
        ("whole-batch retries", lambda t: t["Resources"]["RetryWorkerFunction"]["Properties"]["Events"]["Retry"]["Properties"].pop("FunctionResponseTypes")),
        ("reconcile reads the hook secret", lambda t: next(s for s in statements(t["Resources"]["ReconcileFunction"]["Properties"]["Policies"]) if s.get("Sid") == "ReadOwnSecrets").update(Resource={"Ref": "HookSecretArn"})),
        ("worker reads another secret", lambda t: next(s for s in statements(worker(t)["Policies"]) if s.get("Sid") == "ReadOktaApiSecret").update(Resource={"Ref": "SecretsKmsKeyArn"})),
        ("anyone may send to the queue", drop_queue_statement("OnlyTheHookSends")),
        ("anyone may drain the queue", drop_queue_statement("OnlyTheWorkerConsumes")),
        ("queues may be purged", drop_queue_statement("NoPurge")),
        ("another role may send to the queue", lambda t: queue_statement("OnlyTheHookSends")(t)["Condition"]["ArnNotEquals"]["aws:PrincipalArn"].append({"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:role/other"})),
        ("the hook may consume the queue", lambda t: queue_statement("OnlyTheWorkerConsumes")(t)["Condition"]["ArnNotEquals"].update({"aws:PrincipalArn": [{"Fn::GetAtt": ["RetryWorkerFunctionRole", "Arn"]}, {"Fn::GetAtt": ["OktaHookFunctionRole", "Arn"]}]})),
        ("queue denial turned into an allow", lambda t: queue_statement("OnlyTheHookSends")(t).update(Effect="Allow")),
        ("batch does not fit the timeout", lambda t: worker(t)["Events"]["Retry"]["Properties"].update(BatchSize=20)),
        ("no message budget", lambda t: worker(t)["Environment"]["Variables"].pop("OKTA_RDS_SYNC_MESSAGE_BUDGET_MS")),
        ("queue key usable outside SQS", lambda t: next(s for s in statements(worker(t)["Policies"]) if s.get("Sid") == "DecryptQueuedDeliveries").pop("Condition")),
        ("queue key usable through Secrets Manager", lambda t: next(s for s in statements(fn(t)["Policies"]) if s.get("Sid") == "EncryptQueuedDeliveries")["Condition"]["StringEquals"].update({"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}})),
        ("reconcile egress everywhere", lambda t: t["Resources"]["ReconcileSecurityGroup"]["Properties"]["SecurityGroupEgress"].append({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "CidrIp": "0.0.0.0/0"})),
        ("reconcile without alarm", lambda t: t["Resources"].pop("ReconcileErrorsAlarm")),
        ("worker URL", lambda t: t["Resources"]["RetryWorkerFunction"]["Properties"].update(FunctionUrlConfig={"AuthType": "NONE"})),
    ] + people


def main(argv):
    self_test = "--self-test" in argv
    paths = [a for a in argv if not a.startswith("--")] or ["template.yaml"]
    template, errors = decode(paths[0])
    if errors or template is None:
        print(f"{paths[0]}: cannot parse: {errors}")
        return 1
    problems = check(template)
    for p in problems:
        print(f"{paths[0]}: {p}")
    if problems:
        return 1
    if not self_test:
        print(f"{paths[0]}: security properties hold")
        return 0
    missed = []
    for description, mutate in weakenings():
        t = copy.deepcopy(template)
        mutate(t)
        if not check(t):
            missed.append(description)
    for d in missed:
        print(f"self-test: weakening not detected: {d}")
    print(f"self-test: {len(weakenings()) - len(missed)} of {len(weakenings())} weakenings detected")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
