//! Filters over the indexed columns, and the time forms people type (`7d`, `2h`, RFC 3339).

use std::time::{Duration, UNIX_EPOCH};

/// A value bound into a filter's SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    Int(i64),
    Text(String),
}

/// Which rows to return. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Unix ms, inclusive.
    pub since_ms: Option<u64>,
    /// Unix ms, exclusive.
    pub until_ms: Option<u64>,
    pub agent: Option<String>,
    /// Row kinds (`exec`, `open`, `decision`, `approval`, ...); empty: all.
    pub kinds: Vec<String>,
    /// `exec` or `open`.
    pub operation: Option<String>,
    /// What the policy said: allow, audit, ask, deny.
    pub action: Option<String>,
    /// What happened: allowed, denied, held (approval rows: their step).
    pub outcome: Option<String>,
    /// The deciding rule.
    pub rule: Option<String>,
    /// A control tag the decision carries (`SOC2:CC6.1`).
    pub control: Option<String>,
    pub pid: Option<u32>,
    /// The program path; a trailing `*` matches by prefix (`/usr/bin/*`).
    pub binary: Option<String>,
    /// The reviewer who decided.
    pub approver: Option<String>,
    /// kernel, policy, reviewer, timeout, daemon-down.
    pub decided_by: Option<String>,
    /// Only rows after this seq.
    pub after_seq: Option<u64>,
    pub limit: Option<u64>,
    /// Take the newest rows first (with `limit`: the last N).
    pub newest_first: bool,
    /// With `newest_first`: hand them back oldest first anyway (the last N, in order).
    pub oldest_first_output: bool,
}

impl Filter {
    /// ` WHERE ...` (or nothing) and its values, numbered `$1..`.
    pub fn where_clause(&self) -> (String, Vec<SqlValue>) {
        let mut conds: Vec<String> = Vec::new();
        let mut values: Vec<SqlValue> = Vec::new();
        let push = |values: &mut Vec<SqlValue>, v: SqlValue| {
            values.push(v);
            values.len()
        };
        let int = |v: u64| SqlValue::Int(i64::try_from(v).unwrap_or(i64::MAX));
        if let Some(t) = self.since_ms {
            let n = push(&mut values, int(t));
            conds.push(format!("time_ms >= ${n}"));
        }
        if let Some(t) = self.until_ms {
            let n = push(&mut values, int(t));
            conds.push(format!("time_ms < ${n}"));
        }
        if let Some(s) = self.after_seq {
            let n = push(&mut values, int(s));
            conds.push(format!("seq > ${n}"));
        }
        for (column, value) in [
            ("agent", &self.agent),
            ("operation", &self.operation),
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("rule", &self.rule),
            ("approver", &self.approver),
            ("decided_by", &self.decided_by),
        ] {
            if let Some(v) = value {
                let n = push(&mut values, SqlValue::Text(v.clone()));
                conds.push(format!("{column} = ${n}"));
            }
        }
        if !self.kinds.is_empty() {
            let list: Vec<String> = self
                .kinds
                .iter()
                .map(|k| format!("${}", push(&mut values, SqlValue::Text(k.clone()))))
                .collect();
            conds.push(format!("kind IN ({})", list.join(", ")));
        }
        if let Some(pid) = self.pid {
            let n = push(&mut values, SqlValue::Int(pid.into()));
            conds.push(format!("pid = ${n}"));
        }
        if let Some(control) = &self.control {
            // The column holds " A B C "; a tag has no spaces (the policy rejects them).
            let n = push(&mut values, SqlValue::Text(format!(" {control} ")));
            conds.push(format!(
                "controls IS NOT NULL AND {}",
                contains_sql("controls", n)
            ));
        }
        if let Some(binary) = &self.binary {
            match binary.strip_suffix('*') {
                Some(prefix) => {
                    let n = push(&mut values, SqlValue::Text(prefix.to_string()));
                    conds.push(format!("substr(binary_path, 1, length(${n})) = ${n}"));
                }
                None => {
                    let n = push(&mut values, SqlValue::Text(binary.clone()));
                    conds.push(format!("binary_path = ${n}"));
                }
            }
        }
        if conds.is_empty() {
            (String::new(), values)
        } else {
            (format!(" WHERE {}", conds.join(" AND ")), values)
        }
    }
}

/// `column` contains parameter `$n` as a substring; portable (no LIKE wildcards, same case
/// rules in SQLite and PostgreSQL): `replace` removes every occurrence, so the length
/// drops exactly when there was one.
fn contains_sql(column: &str, n: usize) -> String {
    format!("length(replace({column}, ${n}, '')) < length({column})")
}

/// Parses a point in time: a duration back from `now_ms` (`7d`, `2h`, `30m`, `90s`,
/// `1h 30m`), an RFC 3339 timestamp (`2025-05-01T12:00:00Z`), or a date (`2025-05-01`,
/// midnight UTC).
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(
            "empty time: give a duration such as 7d or 2h, or an RFC 3339 timestamp".into(),
        );
    }
    if t.starts_with(|c: char| c.is_ascii_digit())
        && let Ok(d) = humantime::parse_duration(t)
    {
        return Ok(now_ms.saturating_sub(d.as_millis() as u64));
    }
    let stamp = if t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-' {
        format!("{t}T00:00:00Z")
    } else {
        t.to_string()
    };
    match humantime::parse_rfc3339_weak(&stamp) {
        Ok(time) => Ok(time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)),
        Err(_) => Err(format!(
            "{text:?} is neither a duration (7d, 2h, 30m, 90s) nor a timestamp (2025-05-01T12:00:00Z or 2025-05-01)"
        )),
    }
}

/// RFC 3339 in UTC with milliseconds (clamped to years 1970..=9999).
pub fn format_time(ms: i64) -> String {
    const LAST_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let t = UNIX_EPOCH + Duration::from_millis(ms.clamp(0, LAST_MS) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_750_000_000_000;

    #[test]
    fn times_read_as_people_write_them() {
        assert_eq!(parse_time("7d", NOW).unwrap(), NOW - 7 * 86_400_000);
        assert_eq!(parse_time("2h", NOW).unwrap(), NOW - 7_200_000);
        assert_eq!(parse_time("30m", NOW).unwrap(), NOW - 1_800_000);
        assert_eq!(parse_time("1h 30m", NOW).unwrap(), NOW - 5_400_000);
        assert_eq!(
            parse_time("2025-01-01T00:00:00Z", NOW).unwrap(),
            1_735_689_600_000
        );
        assert_eq!(parse_time("2025-01-01", NOW).unwrap(), 1_735_689_600_000);
        let err = parse_time("yesterday", NOW).unwrap_err();
        assert!(err.contains("neither a duration"), "{err}");
        assert!(parse_time("7x", NOW).is_err());
        assert_eq!(format_time(1_735_689_600_000), "2025-01-01T00:00:00.000Z");
    }

    #[test]
    fn filters_number_their_parameters_in_order() {
        let f = Filter {
            since_ms: Some(5),
            agent: Some("bot".into()),
            control: Some("SOC2:CC6.1".into()),
            binary: Some("/usr/bin/*".into()),
            kinds: vec!["decision".into()],
            ..Filter::default()
        };
        let (sql, values) = f.where_clause();
        assert!(
            sql.starts_with(" WHERE time_ms >= $1 AND agent = $2"),
            "{sql}"
        );
        assert!(sql.contains("kind IN ($3)"), "{sql}");
        assert!(
            sql.contains("substr(binary_path, 1, length($5)) = $5"),
            "{sql}"
        );
        assert_eq!(values[3], SqlValue::Text(" SOC2:CC6.1 ".into()));
        assert_eq!(values[4], SqlValue::Text("/usr/bin/".into()));
        assert_eq!(Filter::default().where_clause().0, "");
    }
}
