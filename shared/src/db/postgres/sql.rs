//! PostgreSQL SQL text: identifier quoting, the state schema, fact upserts, catalog reads and step rendering.
//!
//! Pure: no I/O. Identifiers go through [`quote_ident`] and nothing else; values are bind parameters. The
//! only literal built into text is the role comment, whose content is a validated Okta id.

/// PostgreSQL's identifier limit, in bytes (longer names would be truncated).
pub const PG_MAX_IDENT_BYTES: usize = 63;
use crate::okta::is_okta_id;
use crate::plan::Step;

/// Prefix of the comment put on every managed role, followed by the Okta user id.
pub const COMMENT_PREFIX: &str = "okta-rds-sync:";

/// Startup options of every connection (sent in the startup packet, so no role or database setting can
/// override them):
/// - `search_path` is `pg_catalog, pg_temp`: nothing an ordinary login can create (in `public`, say) is ever
///   visible to the master's statements. `pg_temp` is named last so it is not searched first, and functions
///   and operators are never looked up there. Every function in this module is also schema-qualified.
/// - `statement_timeout`: no statement (bootstrap, session kill) waits forever; transactions lower it.
/// - `idle_in_transaction_session_timeout`: a transaction left open (an invocation cut short, a frozen
///   Lambda sandbox) releases its locks within seconds instead of blocking every other delivery;
/// - read-write, read-committed transactions whatever the database's or the role's defaults say (a
///   database owner could otherwise make every transaction read-only and stop all offboarding).
/// - `jit=off`: the catalog reads are estimated over every role of the cluster, and with a few thousand
///   roles their cost passes `jit_above_cost`: each execution then spent ~30 ms compiling (LLVM) a query
///   that runs in 2 ms.
/// - `exit_on_error=off`: with it on (any database owner may set it), every error ends the session: a
///   statement prepared before the state schema exists, or one user's failed step, would take the whole
///   connection and every other user's revocation with it.
/// - `synchronous_commit=on`: a revocation acknowledged to Okta is on disk, whatever the database says.
pub const SESSION_OPTIONS: &str = "-c search_path=pg_catalog,pg_temp -c statement_timeout=10000 \
     -c idle_in_transaction_session_timeout=5000 -c lock_timeout=2000 -c default_transaction_read_only=off \
     -c default_transaction_isolation=read\\ committed -c default_transaction_deferrable=off -c jit=off \
     -c exit_on_error=off -c synchronous_commit=on";

/// Run on every new connection, in one round trip: drop any role a setting made the session assume, and
/// any `transaction_timeout` (PostgreSQL 17+) or `createrole_self_grant` (16+) a setting imposed, which no
/// startup option could name on older servers (`current_setting(name, true)` is NULL where a setting does
/// not exist); then whether the session runs as the master, and `server_version_num` (e.g. 150019).
pub const SESSION_START: &str = "SET ROLE NONE;
SELECT pg_catalog.set_config('transaction_timeout', '0', false)
  WHERE pg_catalog.current_setting('transaction_timeout', true) IS NOT NULL;
SELECT pg_catalog.set_config('createrole_self_grant', '', false)
  WHERE pg_catalog.current_setting('createrole_self_grant', true) IS NOT NULL;
SELECT current_user = session_user AS master, pg_catalog.current_setting('server_version_num') AS version";

/// Whether the kept connection still answers.
pub const PING: &str = "SELECT 1";

/// Who owns the state schema `$1`, and which of its objects someone else owns. A schema or table that an
/// ordinary login created (before the first run, or by a grant) could be used to run code as the master.
/// Also its comment, which records the version of its tables ([`STATE_VERSION`]): a current schema costs this
/// one query at a cold start, and no DDL (whose table locks would wait on live deliveries).
pub const STATE_SCHEMA_OWNERSHIP: &str = "
SELECT n.nspowner = r.oid AS owned_by_master,
       pg_catalog.pg_get_userbyid(n.nspowner)::text AS owner,
       ARRAY(SELECT c.relname::text FROM pg_catalog.pg_class c
             WHERE c.relnamespace = n.oid AND c.relowner <> r.oid ORDER BY 1) AS foreign_objects,
       pg_catalog.obj_description(n.oid, 'pg_namespace') AS version
FROM pg_catalog.pg_namespace n, pg_catalog.pg_roles r
WHERE n.nspname::text = $1::text AND r.rolname = session_user";

/// The state schema's comment once its tables are current. Bump it with every change to the DDL.
pub const STATE_VERSION: &str = "okta-rds-sync state v2";

/// All users' steps run inside this savepoint (one round trip); if any fails, the unit rolls back to it and
/// runs each user on their own.
pub const ALL_USERS_SAVEPOINT: &str = "SAVEPOINT okta_rds_sync_all";
pub const RELEASE_ALL_USERS_SAVEPOINT: &str = "RELEASE SAVEPOINT okta_rds_sync_all";
pub const ROLLBACK_ALL_USERS_SAVEPOINT: &str =
    "ROLLBACK TO SAVEPOINT okta_rds_sync_all; RELEASE SAVEPOINT okta_rds_sync_all";

/// One user's steps run inside this savepoint, so a permanent failure of one user does not abort the others.
pub const USER_SAVEPOINT: &str = "SAVEPOINT okta_rds_sync_user";
pub const RELEASE_USER_SAVEPOINT: &str = "RELEASE SAVEPOINT okta_rds_sync_user";
pub const ROLLBACK_USER_SAVEPOINT: &str =
    "ROLLBACK TO SAVEPOINT okta_rds_sync_user; RELEASE SAVEPOINT okta_rds_sync_user";

/// Create the marker role (its name quoted).
pub fn create_marker_role(marker: &str) -> Result<String, IdentError> {
    let m = quote_ident(marker)?;
    Ok(format!(
        "CREATE ROLE {m} NOLOGIN; COMMENT ON ROLE {m} IS 'okta-rds-sync: members are managed login roles'"
    ))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("empty identifier")]
    Empty,
    #[error("identifier is {0} bytes; PostgreSQL allows {PG_MAX_IDENT_BYTES}")]
    TooLong(usize),
    #[error("identifier contains NUL")]
    Nul,
    #[error("{0:?} is not an Okta id")]
    NotOktaId(String),
}

/// Quote an identifier for PostgreSQL: wrap in double quotes, double any embedded double quote.
///
/// Rejects what PostgreSQL would silently alter (it truncates names over 63 bytes) or refuse (NUL).
/// Quoted identifiers are case-sensitive and may contain anything else, including `;`, `'`, spaces and
/// any Unicode, so the result can never end the identifier early.
pub fn quote_ident(name: &str) -> Result<String, IdentError> {
    if name.is_empty() {
        return Err(IdentError::Empty);
    }
    if name.len() > PG_MAX_IDENT_BYTES {
        return Err(IdentError::TooLong(name.len()));
    }
    if name.contains('\0') {
        return Err(IdentError::Nul);
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// `schema.table` with both parts quoted.
pub fn qualified(schema: &str, table: &str) -> Result<String, IdentError> {
    Ok(format!("{}.{}", quote_ident(schema)?, quote_ident(table)?))
}

/// The Okta id recorded in a role comment, if the comment is ours.
pub fn okta_id_from_comment(comment: Option<&str>) -> Option<String> {
    comment?
        .strip_prefix(COMMENT_PREFIX)
        .filter(|id| is_okta_id(id))
        .map(str::to_owned)
}

/// SQL statements for one step. `marker` is the marker role, `iam` the role that switches a login to IAM
/// authentication (`rds_iam`); `okta_id` the user the step is for.
pub fn render_step(
    step: &Step,
    marker: &str,
    iam: &str,
    okta_id: &str,
) -> Result<Vec<String>, IdentError> {
    Ok(match step {
        Step::Create { role } => render_create(role, false, &[marker], okta_id)?,
        Step::Rename { from, to } => vec![format!(
            "ALTER ROLE {} RENAME TO {}",
            quote_ident(from)?,
            quote_ident(to)?
        )],
        Step::SetLogin { role, login } => {
            vec![format!(
                "ALTER ROLE {} {}",
                quote_ident(role)?,
                if *login { "LOGIN" } else { "NOLOGIN" }
            )]
        }
        Step::Grant { granted, to } => vec![format!(
            "GRANT {} TO {}",
            quote_ident(granted)?,
            quote_ident(to)?
        )],
        Step::Revoke { granted, from } => vec![format!(
            "REVOKE {} FROM {}",
            quote_ident(granted)?,
            quote_ident(from)?
        )],
        Step::EnableIam { role } => vec![format!(
            "GRANT {} TO {}",
            quote_ident(iam)?,
            quote_ident(role)?
        )],
        Step::DisableIam { role } => vec![format!(
            "REVOKE {} FROM {}",
            quote_ident(iam)?,
            quote_ident(role)?
        )],
    })
}

/// A new role with its first memberships (`member_of`, the marker first) and, if `login`, LOGIN, in one
/// `CREATE ROLE … IN ROLE …`, then its comment: two statements where a statement per step made six (a
/// 100-user onboarding ran 600 DDL statements). Same checks and grantor as `GRANT`.
pub fn render_create(
    role: &str,
    login: bool,
    member_of: &[&str],
    okta_id: &str,
) -> Result<Vec<String>, IdentError> {
    if !is_okta_id(okta_id) {
        return Err(IdentError::NotOktaId(okta_id.to_owned()));
    }
    let r = quote_ident(role)?;
    let roles = member_of
        .iter()
        .map(|m| quote_ident(m))
        .collect::<Result<Vec<_>, _>>()?
        .join(", ");
    let login = if login { "LOGIN" } else { "NOLOGIN" };
    Ok(vec![
        format!("CREATE ROLE {r} {login} IN ROLE {roles}"),
        format!("COMMENT ON ROLE {r} IS '{COMMENT_PREFIX}{okta_id}'"),
    ])
}

/// DDL of the state schema. Idempotent; run under an advisory lock.
pub fn state_schema_ddl(schema: &str) -> Result<Vec<String>, IdentError> {
    let s = quote_ident(schema)?;
    Ok(vec![
        format!("CREATE SCHEMA IF NOT EXISTS {s}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.users (
                okta_id text PRIMARY KEY,
                login text, login_published timestamptz, login_uuid text,
                status text, status_published timestamptz, status_uuid text,
                role_name text,
                updated_at timestamptz NOT NULL DEFAULT pg_catalog.now())"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.memberships (
                okta_id text NOT NULL, group_id text NOT NULL, group_name text NOT NULL,
                member boolean NOT NULL, published timestamptz NOT NULL, uuid text NOT NULL,
                PRIMARY KEY (okta_id, group_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.deleted_groups (
                group_id text PRIMARY KEY, published timestamptz NOT NULL, uuid text NOT NULL)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.seen_deliveries (
                event_id text PRIMARY KEY, received_at timestamptz NOT NULL DEFAULT pg_catalog.now())"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.seen_events (
                uuid text PRIMARY KEY, event_type text NOT NULL, published timestamptz NOT NULL,
                received_at timestamptz NOT NULL DEFAULT pg_catalog.now())"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.audit (
                id bigserial PRIMARY KEY,
                at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
                delivery_id text, event_uuids text[] NOT NULL DEFAULT '{{}}', actor text,
                okta_id text, role_name text, action text NOT NULL, detail text,
                outcome text NOT NULL, duration_ms double precision)"
        ),
        format!("CREATE INDEX IF NOT EXISTS audit_okta_id ON {s}.audit (okta_id, at)"),
        // v2: the recorded role's OID, so a role renamed or unmarked behind our back is still ours.
        format!("ALTER TABLE {s}.users ADD COLUMN IF NOT EXISTS role_oid oid"),
        format!("COMMENT ON SCHEMA {s} IS '{STATE_VERSION}'"),
    ])
}

/// Statements with bind parameters, qualified with the state schema. Each unit of work costs a fixed
/// number of them whatever its size (arrays, `unnest`), and several steps are one statement each
/// (data-modifying CTEs), so a delivery is a handful of round trips. Facts only move forward: a row is
/// replaced only by a fact with a newer `(published, uuid)` stamp. Membership facts of groups that are not
/// mapped only update rows that exist: a group mapped once and unmapped since must not keep stale
/// memberships for the day it is mapped again.
///
/// Rows are found by joining the distinct elements of the `unnest`ed array, not with `= ANY($n)`, and the
/// catalog reads join the memberships once instead of a subquery per role: a prepared statement keeps the
/// generic plan it made while the tables (and `pg_authid`) were small, a sequential scan, and `= ANY` then
/// compares every row with every element (milliseconds per statement at a few thousand users); joins stay
/// linear whatever plan stale statistics give.
#[derive(Debug, Clone)]
pub struct StateSql {
    /// `$1` delivery id; `$2..$4` events (uuid, type, published): `(new delivery, new uuids)`.
    pub claim: String,
    /// Users' logins `$1..$4` and statuses `$5..$8` (id, value, published, uuid; one row per user, NULL
    /// where absent), memberships `$9..$15` (id, group id, group name, member, published, uuid, mapped).
    pub write_facts: String,
    pub upsert_deleted_group: String,
    pub void_group_memberships: String,
    /// Users `$1`: `(okta_id, login, status, role_name, group ids, group names)`.
    pub read_facts: String,
    /// Roles `$1`/`$2` (okta ids, role names), audit `$3..$11`, IAM role `$12`: whether the master now
    /// has the IAM role's privileges.
    pub finish: String,
    pub insert_audit: String,
    pub managed_users: String,
    pub group_members: String,
    pub lock_users: String,
    pub read_roles: String,
}

impl StateSql {
    /// Every statement, for checks over all of them.
    pub fn statements(&self) -> Vec<&str> {
        vec![
            &self.claim,
            &self.write_facts,
            &self.upsert_deleted_group,
            &self.void_group_memberships,
            &self.read_facts,
            &self.finish,
            &self.insert_audit,
            &self.managed_users,
            &self.group_members,
            &self.lock_users,
            &self.read_roles,
        ]
    }

    pub fn new(schema: &str) -> Result<Self, IdentError> {
        let t = |name: &str| qualified(schema, name);
        let (users, memberships, deleted) = (t("users")?, t("memberships")?, t("deleted_groups")?);
        let audit = t("audit")?;
        // Whether the proposed `(p, u)` stamp of `EXCLUDED` is newer than `tbl`'s (and present).
        let newer = |tbl: &str, p: &str, u: &str| {
            format!(
                "(EXCLUDED.{p} IS NOT NULL AND ({tbl}.{p} IS NULL OR ({tbl}.{p}, {tbl}.{u} COLLATE \"C\") < (EXCLUDED.{p}, EXCLUDED.{u} COLLATE \"C\")))"
            )
        };
        let (new_login, new_status) = (
            newer("u", "login_published", "login_uuid"),
            newer("u", "status_published", "status_uuid"),
        );
        let pick = |newer: &str, col: &str| {
            format!("{col} = CASE WHEN {newer} THEN EXCLUDED.{col} ELSE u.{col} END")
        };
        let insert_audit = |first: usize| {
            let p = |i: usize| format!("${}", first + i);
            format!(
                "INSERT INTO {audit} (delivery_id, event_uuids, actor, okta_id, role_name, action, detail, outcome, duration_ms)
                 SELECT {}, pg_catalog.string_to_array(x.uuids, ','), x.actor, x.okta_id, x.role_name, x.action, x.detail,
                        x.outcome, x.duration_ms
                 FROM ROWS FROM (pg_catalog.unnest({}::text[]), pg_catalog.unnest({}::text[]), pg_catalog.unnest({}::text[]),
                                 pg_catalog.unnest({}::text[]), pg_catalog.unnest({}::text[]), pg_catalog.unnest({}::text[]),
                                 pg_catalog.unnest({}::text[]), pg_catalog.unnest({}::float8[]))
                   AS x (uuids, actor, okta_id, role_name, action, detail, outcome, duration_ms)",
                p(0), p(1), p(2), p(3), p(4), p(5), p(6), p(7), p(8)
            )
        };
        // A role's OID by its exact name, from the catalog cache (`to_regrole`) rather than a join with
        // `pg_roles`, which a generic plan made while the cluster had few roles runs as a scan of them all.
        // A longer name would be truncated to another role's, and no role has an empty one. `quote_ident`
        // keeps `to_regrole` from reading a name as an OID (`"123"`) and from folding its case.
        let role_oid = |name: &str| {
            format!(
                "(CASE WHEN pg_catalog.octet_length({name}) BETWEEN 1 AND {PG_MAX_IDENT_BYTES} \
                 THEN pg_catalog.to_regrole(pg_catalog.quote_ident({name}))::oid END)"
            )
        };
        Ok(Self {
            claim: format!(
                "WITH d AS (INSERT INTO {deliveries} (event_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING event_id),
                 e AS (INSERT INTO {events} (uuid, event_type, published)
                       SELECT x.uuid, x.event_type, x.published
                       FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[]),
                                       pg_catalog.unnest($4::timestamptz[])) AS x (uuid, event_type, published)
                       WHERE EXISTS (SELECT 1 FROM d)
                       ON CONFLICT DO NOTHING RETURNING uuid)
                 SELECT EXISTS (SELECT 1 FROM d), ARRAY(SELECT e.uuid FROM e)",
                deliveries = t("seen_deliveries")?,
                events = t("seen_events")?
            ),
            write_facts: format!(
                "WITH w AS (
                   INSERT INTO {users} AS u (okta_id, login, login_published, login_uuid, status, status_published, status_uuid)
                   SELECT COALESCE(l.okta_id, s.okta_id), l.login, l.login_published, l.login_uuid, s.status, s.status_published, s.status_uuid
                   FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[]),
                                   pg_catalog.unnest($3::timestamptz[]), pg_catalog.unnest($4::text[]))
                          AS l (okta_id, login, login_published, login_uuid)
                   FULL JOIN ROWS FROM (pg_catalog.unnest($5::text[]), pg_catalog.unnest($6::text[]),
                                        pg_catalog.unnest($7::timestamptz[]), pg_catalog.unnest($8::text[]))
                          AS s (okta_id, status, status_published, status_uuid) ON s.okta_id = l.okta_id
                   ON CONFLICT (okta_id) DO UPDATE SET {}, {}, {}, {}, {}, {}, updated_at = pg_catalog.now()
                   WHERE {new_login} OR {new_status}
                   RETURNING 1),
                 m AS (
                   INSERT INTO {memberships} AS m (okta_id, group_id, group_name, member, published, uuid)
                   SELECT x.okta_id, x.group_id, x.group_name, x.member, x.published, x.uuid
                   FROM ROWS FROM (pg_catalog.unnest($9::text[]), pg_catalog.unnest($10::text[]),
                                   pg_catalog.unnest($11::text[]), pg_catalog.unnest($12::bool[]),
                                   pg_catalog.unnest($13::timestamptz[]), pg_catalog.unnest($14::text[]),
                                   pg_catalog.unnest($15::bool[]))
                     AS x (okta_id, group_id, group_name, member, published, uuid, mapped)
                   WHERE NOT EXISTS (SELECT 1 FROM {deleted} d WHERE d.group_id = x.group_id
                                     AND (d.published, d.uuid COLLATE \"C\") >= (x.published, x.uuid COLLATE \"C\"))
                     AND (x.mapped OR EXISTS (SELECT 1 FROM {memberships} e
                                              WHERE e.okta_id = x.okta_id AND e.group_id = x.group_id))
                   ON CONFLICT (okta_id, group_id) DO UPDATE SET group_name = EXCLUDED.group_name,
                     member = EXCLUDED.member, published = EXCLUDED.published, uuid = EXCLUDED.uuid
                   WHERE (m.published, m.uuid COLLATE \"C\") < (EXCLUDED.published, EXCLUDED.uuid COLLATE \"C\")
                   RETURNING 1)
                 SELECT (SELECT pg_catalog.count(*) FROM w), (SELECT pg_catalog.count(*) FROM m)",
                pick(&new_login, "login"),
                pick(&new_login, "login_uuid"),
                pick(&new_login, "login_published"),
                pick(&new_status, "status"),
                pick(&new_status, "status_uuid"),
                pick(&new_status, "status_published"),
            ),
            upsert_deleted_group: format!(
                "INSERT INTO {deleted} AS g (group_id, published, uuid) VALUES ($1, $2, $3)
                 ON CONFLICT (group_id) DO UPDATE SET published = EXCLUDED.published, uuid = EXCLUDED.uuid
                 WHERE {}",
                newer("g", "published", "uuid")
            ),
            void_group_memberships: format!(
                "UPDATE {memberships} SET member = false, published = $2, uuid = $3
                 WHERE group_id = $1 AND (published, uuid COLLATE \"C\") < ($2, $3 COLLATE \"C\")
                 RETURNING okta_id"
            ),
            read_facts: format!(
                "SELECT u.okta_id, u.login, u.status, u.role_name, g.ids, g.names
                 FROM (SELECT DISTINCT i.id FROM pg_catalog.unnest($1::text[]) AS i (id)) AS t
                 JOIN {users} u ON u.okta_id = t.id
                 CROSS JOIN LATERAL (
                   SELECT COALESCE(pg_catalog.array_agg(m.group_id ORDER BY m.group_id), '{{}}'::text[]) AS ids,
                          COALESCE(pg_catalog.array_agg(m.group_name ORDER BY m.group_id), '{{}}'::text[]) AS names
                   FROM {memberships} m
                   WHERE m.okta_id = u.okta_id AND m.member
                     AND NOT EXISTS (SELECT 1 FROM {deleted} d WHERE d.group_id = m.group_id
                                     AND (d.published, d.uuid COLLATE \"C\") >= (m.published, m.uuid COLLATE \"C\"))) AS g"
            ),
            finish: format!(
                "WITH r AS (
                   UPDATE {users} u SET role_name = x.role_name, role_oid = x.role_oid, updated_at = pg_catalog.now()
                   FROM (SELECT y.okta_id, y.role_name, {} AS role_oid
                         FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS y (okta_id, role_name)) AS x
                   WHERE u.okta_id = x.okta_id
                     AND (u.role_name IS DISTINCT FROM x.role_name OR u.role_oid IS DISTINCT FROM x.role_oid)
                   RETURNING 1),
                 a AS ({} RETURNING 1)
                 SELECT (SELECT pg_catalog.count(*) FROM r) + (SELECT pg_catalog.count(*) FROM a) >= 0,
                        COALESCE(pg_catalog.pg_has_role(session_user, {}, 'USAGE'), false)",
                role_oid("y.role_name"),
                insert_audit(3),
                role_oid("$12::text")
            ),
            insert_audit: insert_audit(1),
            managed_users: format!("SELECT okta_id FROM {users} WHERE role_name IS NOT NULL"),
            group_members: format!("SELECT okta_id FROM {memberships} WHERE group_id = $1 AND member"),
            lock_users: format!(
                "WITH new AS (INSERT INTO {users} (okta_id)
                              SELECT DISTINCT t.u FROM pg_catalog.unnest($1::text[]) AS t (u) ORDER BY 1
                              ON CONFLICT DO NOTHING)
                 SELECT pg_catalog.count(*)
                 FROM (SELECT u.okta_id
                       FROM (SELECT DISTINCT i.id FROM pg_catalog.unnest($1::text[]) AS i (id)) AS t
                       JOIN {users} u ON u.okta_id = t.id
                       ORDER BY u.okta_id FOR UPDATE OF u) AS locked"
            ),
            read_roles: format!(
                "WITH rec AS (SELECT u.role_oid, pg_catalog.min(u.okta_id) AS okta_id
                              FROM pg_catalog.unnest($5::text[]) AS t (id) JOIN {users} u ON u.okta_id = t.id
                              WHERE u.role_oid IS NOT NULL GROUP BY u.role_oid),
                      wanted AS (SELECT n.oid FROM pg_catalog.unnest($1::text[]) AS w (name)
                                   JOIN pg_catalog.pg_roles n ON n.rolname = w.name::name AND n.rolname::text = w.name
                                 UNION SELECT rec.role_oid FROM rec),
                      r AS MATERIALIZED (SELECT a.oid, a.rolname, a.rolcanlogin, a.rolsuper
                                         FROM wanted JOIN pg_catalog.pg_roles a ON a.oid = wanted.oid),
                      rds AS MATERIALIZED (SELECT s.oid FROM pg_catalog.pg_roles s
                                           WHERE s.rolname IN ('rds_superuser', 'rdsadmin', 'rdsrepladmin')),
                      up AS (SELECT m.member, pg_catalog.array_agg(g.rolname::text) AS member_of,
                                    pg_catalog.bool_or(g.rolname::text = $2::text) AS managed
                             FROM r JOIN pg_catalog.pg_auth_members m ON m.member = r.oid
                             JOIN pg_catalog.pg_roles g ON g.oid = m.roleid GROUP BY m.member),
                      down AS (SELECT m.roleid, pg_catalog.array_agg(h.rolname::text) AS held_by
                               FROM r JOIN pg_catalog.pg_auth_members m ON m.roleid = r.oid
                               JOIN pg_catalog.pg_roles h ON h.oid = m.member
                               WHERE h.rolname <> session_user GROUP BY m.roleid)
                 SELECT r.rolname::text,
                        r.rolcanlogin,
                        (r.rolsuper OR r.rolname::text = ANY($3::text[]) OR r.rolname = session_user
                          OR EXISTS (SELECT 1 FROM rds WHERE pg_catalog.pg_has_role(r.oid, rds.oid, 'MEMBER'))) AS protected,
                        d.description AS comment,
                        COALESCE(up.member_of, '{{}}'::text[]) AS member_of,
                        COALESCE(up.managed, false) AS managed,
                        pg_catalog.pg_has_role(session_user, r.oid, 'USAGE') AS master_inherits,
                        (r.rolname = session_user OR r.rolname::text = ANY($4::text[])) AS untouchable,
                        rec.okta_id AS recorded_for,
                        COALESCE(down.held_by, '{{}}'::text[]) AS held_by
                 FROM r LEFT JOIN up ON up.member = r.oid LEFT JOIN down ON down.roleid = r.oid
                 LEFT JOIN rec ON rec.role_oid = r.oid
                 LEFT JOIN pg_catalog.pg_shdescription d
                   ON d.objoid = r.oid AND d.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass"
            ),
        })
    }
}

/// Roles carrying the marker (`$1`) whose privileges the master inherits through a direct membership: on
/// PostgreSQL 14 a user may grant her own role to anyone, the master included, and an inherited IAM role
/// would then lock the master out (RDS refuses its password). They are revoked and alarmed.
pub const MASTER_IN_MARKED_ROLES: &str = "
SELECT r.rolname::text FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
WHERE m.member = (SELECT o.oid FROM pg_catalog.pg_roles o WHERE o.rolname = session_user)
  AND pg_catalog.pg_has_role(session_user, r.oid, 'USAGE')
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members k JOIN pg_catalog.pg_roles g ON g.oid = k.roleid
              WHERE k.member = r.oid AND g.rolname::text = $1::text)";

/// The roles `$1` (oid, name), joined to the catalog by name (`pg_stat_activity` joins every role of the
/// cluster on each call, and `rolname = ANY($1)` compares every role with every name: milliseconds per poll
/// with thousands of roles). The text comparison keeps the match exact (a cast to `name` truncates at 63
/// bytes).
macro_rules! session_roles {
    () => {
        "r AS MATERIALIZED (
  SELECT DISTINCT a.oid, a.rolname::text AS role FROM pg_catalog.unnest($1::text[]) AS w (name)
  JOIN pg_catalog.pg_roles a ON a.rolname = w.name::name AND a.rolname::text = w.name)"
    };
}

/// Signal every session of the roles `$1` to terminate (no wait) that the master may signal:
/// `(pid, role, may, signalled)` of every session of those roles. The sessions are selected first (a
/// materialized CTE), so no other backend is ever signalled whatever order the planner would evaluate the
/// conditions in. `may` is PostgreSQL's own rule (`pg_signal_backend` in signalfuncs.c: a superuser's
/// session only by a superuser; otherwise having the privileges of its role or of `pg_signal_backend`):
/// `pg_terminate_backend` raises an error for a session it may not signal, and one such session (a
/// superuser holding the user's role) would otherwise keep the user's own sessions alive. `signalled` is
/// false for those, and for a session gone meanwhile.
pub const TERMINATE_SESSIONS: &str = concat!(
    "WITH ",
    session_roles!(),
    ",
me AS MATERIALIZED (SELECT m.rolsuper FROM pg_catalog.pg_roles m WHERE m.rolname = current_user),
s AS MATERIALIZED (
  SELECT s.pid, r.role,
         (NOT a.rolsuper OR COALESCE((SELECT me.rolsuper FROM me), false))
           AND (pg_catalog.pg_has_role(r.oid, 'USAGE')
                OR pg_catalog.pg_has_role('pg_signal_backend', 'USAGE')) AS may
  FROM pg_catalog.pg_stat_get_activity(NULL) s JOIN r ON r.oid = s.usesysid
  JOIN pg_catalog.pg_roles a ON a.oid = r.oid
  WHERE s.pid <> pg_catalog.pg_backend_pid())
SELECT pid, role, may, CASE WHEN may THEN pg_catalog.pg_terminate_backend(pid) ELSE false END FROM s"
);

/// Sessions left per role of `$1`: `(role, count)`, only roles that have some.
pub const COUNT_SESSIONS: &str = concat!(
    "WITH ",
    session_roles!(),
    "
SELECT r.role, pg_catalog.count(*)::bigint FROM pg_catalog.pg_stat_get_activity(NULL) s
JOIN r ON r.oid = s.usesysid WHERE s.pid <> pg_catalog.pg_backend_pid()
GROUP BY r.role"
);

/// Whether the master user (`session_user`) has the privileges of the IAM role (`$1`), which would make RDS
/// refuse its password. Checked with `USAGE` (inherited privileges), which is what RDS's check follows.
pub const MASTER_INHERITS_ROLE: &str = "SELECT pg_catalog.pg_has_role(session_user, r.oid, 'USAGE')
     FROM pg_catalog.pg_roles r WHERE r.rolname = $1::text::name AND r.rolname::text = $1::text";

/// Mapped roles (`$1`) that would let a person bypass IAM authentication or escalate.
pub const PRIVILEGED_ROLES: &str = "
SELECT r.rolname::text FROM pg_catalog.pg_roles r
WHERE r.rolname::text = ANY($1::text[])
  AND (r.rolsuper OR r.rolcreaterole OR r.rolbypassrls OR r.rolname IN ('rds_superuser', 'rdsadmin')
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_roles s WHERE s.rolname IN ('rds_superuser', 'rdsadmin')
                  AND pg_catalog.pg_has_role(r.oid, s.oid, 'MEMBER')))";

/// Of the memberships `($1[i] member of $2[i])` just revoked, those that still exist: on PostgreSQL 16+ a
/// REVOKE only removes the grant made by the revoking role, so a membership another role also granted
/// survives it.
pub const REMAINING_MEMBERSHIPS: &str = "
SELECT x.member, x.granted
FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS x (member, granted)
WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m
              JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
              JOIN pg_catalog.pg_roles u ON u.oid = m.member
              WHERE u.rolname::text = x.member AND r.rolname::text = x.granted)";

pub const EXISTING_ROLES: &str =
    "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname::text = ANY($1::text[])";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_ident_table() {
        let ok = [
            ("jane", "\"jane\""),
            ("Jane.Doe@Acme.com", "\"Jane.Doe@Acme.com\""),
            ("a\"b", "\"a\"\"b\""),
            ("\"", "\"\"\"\""),
            (
                "x\"; DROP ROLE postgres; --",
                "\"x\"\"; DROP ROLE postgres; --\"",
            ),
            ("o'brien", "\"o'brien\""),
            ("zoë 🚀", "\"zoë 🚀\""),
            ("$$", "\"$$\""),
            ("back\\slash", "\"back\\slash\""),
        ];
        for (input, want) in ok {
            assert_eq!(quote_ident(input).unwrap(), want, "{input:?}");
        }
        assert_eq!(quote_ident(""), Err(IdentError::Empty));
        assert_eq!(quote_ident("a\0b"), Err(IdentError::Nul));
        assert_eq!(quote_ident(&"x".repeat(63)).unwrap().len(), 65);
        assert_eq!(quote_ident(&"x".repeat(64)), Err(IdentError::TooLong(64)));
        assert_eq!(quote_ident(&"é".repeat(32)), Err(IdentError::TooLong(64)));
    }

    #[test]
    fn quoted_identifiers_round_trip() {
        // Unquoting the output gives the input back: nothing is lost or can escape the quotes.
        for input in ["a", "a\"\"b", "\"; select 1; --", "ünï\"cöde"] {
            let q = quote_ident(input).unwrap();
            let inner = &q[1..q.len() - 1];
            assert!(!inner.replace("\"\"", "").contains('"'));
            assert_eq!(inner.replace("\"\"", "\""), input);
        }
    }

    #[test]
    fn a_new_role_takes_its_memberships_in_its_create() {
        assert_eq!(
            render_create("a\"b@x", true, &["m", "g; DROP ROLE x", "rds_iam"], "00u1").unwrap(),
            vec![
                "CREATE ROLE \"a\"\"b@x\" LOGIN IN ROLE \"m\", \"g; DROP ROLE x\", \"rds_iam\"",
                "COMMENT ON ROLE \"a\"\"b@x\" IS 'okta-rds-sync:00u1'",
            ]
        );
        assert_eq!(
            render_create("a", false, &["m"], "00u1").unwrap()[0],
            "CREATE ROLE \"a\" NOLOGIN IN ROLE \"m\""
        );
        assert!(render_create("a", true, &["m"], "00u'1").is_err());
        assert!(render_create("a", true, &["m", "bad\0name"], "00u1").is_err());
    }

    #[test]
    fn steps_render_with_quoted_names() {
        let r = |step: Step, okta_id: &str| {
            render_step(&step, "okta_rds_sync_managed", "rds_iam", okta_id)
        };
        assert_eq!(
            r(
                Step::Create {
                    role: "a\"b@x".into()
                },
                "00u1"
            )
            .unwrap(),
            vec![
                "CREATE ROLE \"a\"\"b@x\" NOLOGIN IN ROLE \"okta_rds_sync_managed\"",
                "COMMENT ON ROLE \"a\"\"b@x\" IS 'okta-rds-sync:00u1'",
            ]
        );
        assert!(r(Step::Create { role: "a".into() }, "00u'1").is_err());
        let role = || "a".to_owned();
        let table = [
            (
                Step::SetLogin {
                    role: role(),
                    login: false,
                },
                "ALTER ROLE \"a\" NOLOGIN",
            ),
            (
                Step::SetLogin {
                    role: role(),
                    login: true,
                },
                "ALTER ROLE \"a\" LOGIN",
            ),
            (
                Step::Grant {
                    granted: "g".into(),
                    to: role(),
                },
                "GRANT \"g\" TO \"a\"",
            ),
            (
                Step::Revoke {
                    granted: "g".into(),
                    from: role(),
                },
                "REVOKE \"g\" FROM \"a\"",
            ),
            (
                Step::EnableIam { role: role() },
                "GRANT \"rds_iam\" TO \"a\"",
            ),
            (
                Step::DisableIam { role: role() },
                "REVOKE \"rds_iam\" FROM \"a\"",
            ),
            (
                Step::Rename {
                    from: role(),
                    to: "b".into(),
                },
                "ALTER ROLE \"a\" RENAME TO \"b\"",
            ),
        ];
        for (step, sql) in table {
            assert_eq!(r(step, "x").unwrap(), vec![sql]);
        }
        assert!(
            r(
                Step::Grant {
                    granted: "g".into(),
                    to: "x".repeat(64)
                },
                "x"
            )
            .is_err()
        );
    }

    #[test]
    fn comments_identify_our_roles() {
        assert_eq!(
            okta_id_from_comment(Some("okta-rds-sync:00u1")).as_deref(),
            Some("00u1")
        );
        assert_eq!(okta_id_from_comment(Some("okta-rds-sync:")), None);
        assert_eq!(okta_id_from_comment(Some("managed by ldap2pg")), None);
        assert_eq!(okta_id_from_comment(None), None);
    }

    /// Words directly followed by `(` that are SQL syntax, not function calls.
    const SYNTAX: &[&str] = &["ANY", "ARRAY", "EXISTS", "IN", "VALUES", "COALESCE"];

    /// Function calls in `sql` that are not schema-qualified (a word directly followed by `(`, not preceded
    /// by `.`). Aliases and column lists are written with a space before `(`, so they are not mistaken.
    fn unqualified_calls(sql: &str) -> Vec<String> {
        let bytes = sql.as_bytes();
        let mut calls = Vec::new();
        for (i, _) in sql.match_indices('(') {
            let start = bytes[..i]
                .iter()
                .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                .map_or(0, |p| p + 1);
            let word = &sql[start..i];
            let qualified = start > 0 && bytes[start - 1] == b'.';
            let is_word = word.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
            if is_word && !qualified && !SYNTAX.contains(&word.to_ascii_uppercase().as_str()) {
                calls.push(word.to_owned());
            }
        }
        calls
    }

    /// Every SQL text this module produces.
    fn all_sql() -> Vec<String> {
        let state = StateSql::new("okta_rds_sync").unwrap();
        let mut all: Vec<String> = state.statements().into_iter().map(str::to_owned).collect();
        all.extend(state_schema_ddl("okta_rds_sync").unwrap());
        all.extend(
            [
                TERMINATE_SESSIONS,
                COUNT_SESSIONS,
                MASTER_INHERITS_ROLE,
                PRIVILEGED_ROLES,
                EXISTING_ROLES,
                REMAINING_MEMBERSHIPS,
                SESSION_START,
                PING,
                MASTER_IN_MARKED_ROLES,
                STATE_SCHEMA_OWNERSHIP,
                USER_SAVEPOINT,
                RELEASE_USER_SAVEPOINT,
                ALL_USERS_SAVEPOINT,
                RELEASE_ALL_USERS_SAVEPOINT,
                ROLLBACK_ALL_USERS_SAVEPOINT,
                ROLLBACK_USER_SAVEPOINT,
            ]
            .map(str::to_owned),
        );
        all.push(create_marker_role("m").unwrap());
        all.extend(render_create("r", true, &["m", "g", "rds_iam"], "00u1").unwrap());
        for step in [
            Step::Create { role: "r".into() },
            Step::Rename {
                from: "a".into(),
                to: "b".into(),
            },
            Step::SetLogin {
                role: "r".into(),
                login: true,
            },
            Step::Grant {
                granted: "g".into(),
                to: "r".into(),
            },
            Step::Revoke {
                granted: "g".into(),
                from: "r".into(),
            },
        ] {
            all.extend(render_step(&step, "m", "rds_iam", "00u1").unwrap());
        }
        all
    }

    #[test]
    fn every_function_call_is_schema_qualified() {
        assert_eq!(
            unqualified_calls(
                "SELECT unnest($1), x.f(1), pg_catalog.count(*), ARRAY(SELECT 1) AS t (a)"
            ),
            vec!["unnest"]
        );
        for sql in all_sql() {
            assert!(
                unqualified_calls(&sql).is_empty(),
                "unqualified function call {:?} in:\n{sql}",
                unqualified_calls(&sql)
            );
        }
    }

    #[test]
    fn connections_pin_search_path_and_bound_waits() {
        let options: Vec<&str> = SESSION_OPTIONS.split_whitespace().collect();
        assert!(
            options
                .windows(2)
                .any(|w| w == ["-c", "search_path=pg_catalog,pg_temp"])
        );
        assert!(options.iter().any(|o| o.starts_with("statement_timeout=")));
        assert!(options.contains(&"jit=off"));
        assert!(options.contains(&"exit_on_error=off"));
        assert!(options.contains(&"synchronous_commit=on"));
        assert!(
            options
                .iter()
                .any(|o| o.starts_with("idle_in_transaction_session_timeout="))
        );
    }

    #[test]
    fn state_sql_quotes_the_schema() {
        let s = StateSql::new("we\"ird").unwrap();
        assert!(s.read_facts.contains("\"we\"\"ird\".\"users\""));
        assert!(state_schema_ddl("s").unwrap()[0].contains("CREATE SCHEMA IF NOT EXISTS \"s\""));
    }

    /// A generic plan made while the table was small scans it and compares each row with each array
    /// element: state rows are found by joining `unnest`, and the catalog read has no subquery per role.
    #[test]
    fn rows_are_found_by_joins_not_any_over_a_table() {
        let s = StateSql::new("s").unwrap();
        for sql in s.statements() {
            assert!(!sql.contains("okta_id = ANY("), "{sql}");
        }
        assert!(!s.read_roles.contains("ARRAY(SELECT"), "{}", s.read_roles);
        assert!(
            !s.read_roles.contains("shobj_description"),
            "{}",
            s.read_roles
        );
    }
}
