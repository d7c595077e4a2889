//! `audit`: a target's audit trail (the `audit` table of its state schema), read as the master user with
//! the credentials from Secrets Manager, the way the functions connect.

use std::time::Duration;

use chrono::{DateTime, Utc};
use okta_rds_sync::config::{Config, Engine, TargetConfig};
use okta_rds_sync::naming::{Naming, POSTGRES_NAMES};
use okta_rds_sync::secrets::Secrets;

/// One row of the trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub at: DateTime<Utc>,
    pub okta_id: String,
    pub role: String,
    pub action: String,
    pub outcome: String,
    pub detail: String,
    pub duration_ms: Option<f64>,
    pub actor: String,
    pub delivery_id: String,
    pub event_uuids: Vec<String>,
}

impl Record {
    pub fn json(&self, target: &str) -> serde_json::Value {
        serde_json::json!({
            "at": self.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "target": target,
            "okta_id": self.okta_id,
            "role": self.role,
            "action": self.action,
            "outcome": self.outcome,
            "detail": self.detail,
            "duration_ms": self.duration_ms,
            "actor": self.actor,
            "delivery_id": self.delivery_id,
            "event_uuids": self.event_uuids,
        })
    }
}

/// `--since`: an RFC 3339 time, or a duration back from `now` (`90s`, `30m`, `24h`, `7d`, `2w`).
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = || {
        format!(
            "--since {text:?}: expected an RFC 3339 time (2026-12-01T09:00:00Z) or a duration (90s, 30m, 24h, 7d, 2w)"
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let delta = n
        .checked_mul(seconds)
        .and_then(chrono::TimeDelta::try_seconds)
        .ok_or_else(bad)?;
    now.checked_sub_signed(delta).ok_or_else(bad)
}

/// The names a `--user` may be recorded under: as given (an Okta id or a role name) and the role name
/// the config makes of it as a login.
pub fn user_names(config: &Config, user: &str) -> Vec<String> {
    let naming = Naming {
        source: config.okta.username,
        lowercase: config.okta.lowercase,
    };
    let mut names = vec![user.to_owned()];
    if let Ok(role) = naming.role_name(user, &POSTGRES_NAMES)
        && role != user
    {
        names.push(role);
    }
    names
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub users: Option<Vec<String>>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// The newest `limit` records matching `filter`, oldest first.
pub async fn read(
    target: &TargetConfig,
    sdk: &aws_config::SdkConfig,
    filter: &Filter,
) -> Result<Vec<Record>, String> {
    let secrets = Secrets::new(sdk, Duration::from_secs(60)).map_err(|e| e.to_string())?;
    let mut records = match target.engine {
        Engine::Postgres => read_postgres(target, &secrets, filter).await?,
        Engine::Mysql => read_mysql(target, &secrets, filter).await?,
    };
    records.reverse();
    Ok(records)
}

/// Newest first.
async fn read_postgres(
    target: &TargetConfig,
    secrets: &Secrets,
    filter: &Filter,
) -> Result<Vec<Record>, String> {
    let tls =
        okta_rds_sync::tls::client_config(target.ca_file.as_deref()).map_err(|e| e.to_string())?;
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
    let conn = okta_rds_sync::db::roles::connect_as_master(target, secrets, |creds| {
        let tls = tls.clone();
        async move { okta_rds_sync::db::postgres::connection::connect(target, &creds, tls).await }
    })
    .await
    .map_err(|e| format!("target {}: {e}", target.name))?;
    let table = okta_rds_sync::db::postgres::sql::qualified(&target.state_schema, "audit")
        .map_err(|e| format!("state_schema: {e}"))?;
    let query = format!(
        "SELECT at, coalesce(okta_id, ''), coalesce(role_name, ''), action, outcome, coalesce(detail, ''),
                duration_ms, coalesce(actor, ''), coalesce(delivery_id, ''), event_uuids
         FROM {table}
         WHERE ($1::text[] IS NULL OR okta_id = ANY($1) OR role_name = ANY($1))
           AND ($2::timestamptz IS NULL OR at >= $2)
         ORDER BY id DESC LIMIT $3"
    );
    let rows = conn
        .client
        .query(&query, &[&filter.users, &filter.since, &filter.limit])
        .await
        .map_err(|e| {
            let e = match e.as_db_error() {
                Some(db) => format!("{}: {}", db.code().code(), db.message()),
                None => e.to_string(),
            };
            format!("target {}: cannot read {table}: {e}", target.name)
        })?;
    let records = rows
        .iter()
        .map(|r| Record {
            at: r.get(0),
            okta_id: r.get(1),
            role: r.get(2),
            action: r.get(3),
            outcome: r.get(4),
            detail: r.get(5),
            duration_ms: r.get(6),
            actor: r.get(7),
            delivery_id: r.get(8),
            event_uuids: r.get(9),
        })
        .collect();
    Ok(records)
}

/// Newest first. The state schema is a database of the server; `at` is stored in UTC (the functions'
/// sessions run with `time_zone = '+00:00'`), `event_uuids` comma-separated.
async fn read_mysql(
    target: &TargetConfig,
    secrets: &Secrets,
    filter: &Filter,
) -> Result<Vec<Record>, String> {
    use mysql_async::prelude::Queryable;
    let mut conn =
        okta_rds_sync::db::roles::connect_as_master(target, secrets, |creds| async move {
            okta_rds_sync::db::mysql::connection::connect(target, &creds).await
        })
        .await
        .map_err(|e| format!("target {}: {e}", target.name))?;
    let schema = okta_rds_sync::db::mysql::sql::quote_ident(&target.state_schema)
        .map_err(|e| format!("state_schema: {e}"))?;
    let table = format!("{schema}.`audit`");
    let mut conditions = Vec::new();
    let mut params: Vec<mysql_async::Value> = Vec::new();
    if let Some(users) = &filter.users {
        let marks = vec!["?"; users.len()].join(", ");
        conditions.push(format!("(okta_id IN ({marks}) OR role_name IN ({marks}))"));
        for _ in 0..2 {
            params.extend(users.iter().map(|u| mysql_async::Value::from(u.as_str())));
        }
    }
    if let Some(since) = filter.since {
        conditions.push("at >= ?".to_owned());
        params.push(mysql_async::Value::from(since.naive_utc()));
    }
    let condition = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    params.push(mysql_async::Value::from(filter.limit));
    let query = format!(
        "SELECT at, COALESCE(okta_id, ''), COALESCE(role_name, ''), action, outcome, COALESCE(detail, ''),
                duration_ms, COALESCE(actor, ''), COALESCE(delivery_id, ''), COALESCE(event_uuids, '')
         FROM {table} {condition} ORDER BY id DESC LIMIT ?"
    );
    type Row = (
        chrono::NaiveDateTime,
        String,
        String,
        String,
        String,
        String,
        Option<f64>,
        String,
        String,
        String,
    );
    let rows: Vec<Row> = conn
        .conn
        .exec(query, mysql_async::Params::Positional(params))
        .await
        .map_err(|e| format!("target {}: cannot read {table}: {e}", target.name))?;
    let _ = conn.conn.disconnect().await;
    Ok(rows
        .into_iter()
        .map(
            |(
                at,
                okta_id,
                role,
                action,
                outcome,
                detail,
                duration_ms,
                actor,
                delivery_id,
                uuids,
            )| Record {
                at: at.and_utc(),
                okta_id,
                role,
                action,
                outcome,
                detail,
                duration_ms,
                actor,
                delivery_id,
                event_uuids: uuids
                    .split(',')
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
        )
        .collect())
}

/// A plain-text table: time, user, action, outcome, duration, detail.
pub fn table(records: &[Record]) -> String {
    let header = [
        "TIME (UTC)",
        "USER",
        "OKTA ID",
        "ACTION",
        "OUTCOME",
        "MS",
        "DETAIL",
    ];
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            [
                r.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                if r.role.is_empty() {
                    "-".into()
                } else {
                    one_line(&r.role)
                },
                if r.okta_id.is_empty() {
                    "-".into()
                } else {
                    one_line(&r.okta_id)
                },
                one_line(&r.action),
                one_line(&r.outcome),
                r.duration_ms.map_or("-".into(), |d| format!("{d:.0}")),
                one_line(&r.detail),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let last = cells.len() - 1;
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else if i == 5 {
                out.push_str(&format!("{cell:>w$}  "));
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    };
    line(&header.map(String::from));
    for row in &rows {
        line(row);
    }
    out
}

/// Control characters would let a recorded value rewrite the terminal: shown escaped.
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_durations() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| parse_since(s, now).unwrap().to_rfc3339();
        assert_eq!(at("24h"), "2026-12-05T12:00:00+00:00");
        assert_eq!(at("90s"), "2026-12-06T11:58:30+00:00");
        assert_eq!(at("2w"), "2026-11-22T12:00:00+00:00");
        assert_eq!(at("2026-12-01T09:00:00+01:00"), "2026-12-01T08:00:00+00:00");
        for bad in [
            "",
            "h",
            "24",
            "24y",
            "-1h",
            "99999999999999999999h",
            "yesterday",
        ] {
            assert!(
                parse_since(bad, now).unwrap_err().contains("--since"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_table_lines_up_and_escapes_control_characters() {
        let r = Record {
            at: DateTime::parse_from_rfc3339("2026-12-06T12:00:00.5Z")
                .unwrap()
                .with_timezone(&Utc),
            okta_id: "00u1".into(),
            role: "jane@acme.com".into(),
            action: "disable_login".into(),
            outcome: "applied".into(),
            detail: "x\u{1b}[2J".into(),
            duration_ms: Some(12.4),
            actor: "okta-hook".into(),
            delivery_id: "d".into(),
            event_uuids: vec![],
        };
        let text = table(&[
            r.clone(),
            Record {
                duration_ms: None,
                role: String::new(),
                ..r
            },
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "TIME (UTC)           USER           OKTA ID  ACTION         OUTCOME  MS  DETAIL"
        );
        assert_eq!(
            lines[1],
            "2026-12-06 12:00:00  jane@acme.com  00u1     disable_login  applied  12  x\\u{1b}[2J"
        );
        assert_eq!(
            lines[2],
            "2026-12-06 12:00:00  -              00u1     disable_login  applied   -  x\\u{1b}[2J"
        );
    }
}
