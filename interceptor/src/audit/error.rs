//! Why the audit log could not be read or written, classified so the daemon can fail closed
//! for the right reason and the operator is told what to fix.

/// An audit log failure. Cloneable: one failed group commit answers every waiter in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// Another process holds the write lock longer than the busy timeout.
    #[error("audit log {target} is locked by another writer: {message}")]
    Locked { target: String, message: String },
    /// The disk (or the database's size limit) is full.
    #[error("audit log {target} is full: {message}")]
    Full { target: String, message: String },
    /// The file, its directory or the database is read-only or cannot be created.
    #[error("audit log {target} cannot be written: {message}")]
    Unwritable { target: String, message: String },
    /// The file is not a database, or the database is damaged. Never recreated: move it
    /// aside and keep it as evidence.
    #[error(
        "audit log {target} is corrupt: {message}; it is left as it is (move it aside and keep it as evidence, then start with a new log)"
    )]
    Corrupt { target: String, message: String },
    /// The database server cannot be reached or dropped the connection.
    #[error("audit log {target}: cannot reach the database: {message}")]
    Connection { target: String, message: String },
    /// No log where one was expected (the CLI never creates one).
    #[error("no audit log at {target}{hint}")]
    Missing { target: String, hint: String },
    /// The schema could not be created or upgraded.
    #[error("audit log {target}: migrating the schema failed: {message}")]
    Migration { target: String, message: String },
    /// Any other database error.
    #[error("audit log {target}: {message}")]
    Database { target: String, message: String },
    /// The writer's queue is full (only [`super::AuditLog::try_record`] says this; the
    /// event was not queued and is counted as dropped).
    #[error("the audit writer's queue is full ({capacity} events waiting)")]
    QueueFull { capacity: usize },
    /// The writer has stopped (the daemon is shutting down).
    #[error("the audit writer has stopped")]
    Closed,
    /// A row's stored event cannot be decoded.
    #[error("audit log row {seq}: unreadable event: {message}")]
    Decode { seq: u64, message: String },
}

impl AuditError {
    /// The error for a failed database call on `target`, classified by SQLite result code,
    /// PostgreSQL SQLSTATE or I/O error kind.
    pub(crate) fn classify(target: &str, err: sqlx::Error) -> Self {
        let target = target.to_string();
        let message = err.to_string();
        match &err {
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                classify_code(target, &code, message)
            }
            sqlx::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                    AuditError::Full { target, message }
                }
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    AuditError::Unwritable { target, message }
                }
                _ => AuditError::Connection { target, message },
            },
            sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => AuditError::Connection { target, message },
            sqlx::Error::Configuration(_) => AuditError::Connection { target, message },
            _ => AuditError::Database { target, message },
        }
    }

    /// Whether the log could not take a write (the daemon then refuses operations that must
    /// be recorded).
    pub fn is_write_failure(&self) -> bool {
        !matches!(self, AuditError::Decode { .. })
    }
}

/// SQLite extended result codes are numbers of at most four digits (the primary code is the
/// low byte); PostgreSQL SQLSTATEs are always five characters, sometimes all digits.
fn classify_code(target: String, code: &str, message: String) -> AuditError {
    if code.len() < 5
        && let Ok(n) = code.parse::<i32>()
    {
        return match n & 0xff {
            5 | 6 => AuditError::Locked { target, message },
            13 => AuditError::Full { target, message },
            8 | 14 | 3 => AuditError::Unwritable { target, message },
            11 | 26 => AuditError::Corrupt { target, message },
            // SQLITE_IOERR: a short write on a full disk surfaces here too.
            10 if message.contains("No space left") || message.contains("disk is full") => {
                AuditError::Full { target, message }
            }
            _ => AuditError::Database { target, message },
        };
    }
    match code {
        // disk_full, insufficient_resources, out_of_memory
        "53100" | "53000" | "53200" => AuditError::Full { target, message },
        // lock_not_available, deadlock_detected, serialization_failure
        "55P03" | "40P01" | "40001" => AuditError::Locked { target, message },
        // read_only_sql_transaction, insufficient_privilege
        "25006" | "42501" => AuditError::Unwritable { target, message },
        // data_corrupted, index_corrupted
        "XX001" | "XX002" => AuditError::Corrupt { target, message },
        c if c.starts_with("08") || c.starts_with("57P") => {
            AuditError::Connection { target, message }
        }
        _ => AuditError::Database { target, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_failure_an_operator_can_act_on() {
        let t = || "t".to_string();
        let m = || "m".to_string();
        assert!(matches!(
            classify_code(t(), "5", m()),
            AuditError::Locked { .. }
        ));
        // SQLITE_BUSY_SNAPSHOT (517) is still "locked".
        assert!(matches!(
            classify_code(t(), "517", m()),
            AuditError::Locked { .. }
        ));
        assert!(matches!(
            classify_code(t(), "13", m()),
            AuditError::Full { .. }
        ));
        assert!(matches!(
            classify_code(t(), "8", m()),
            AuditError::Unwritable { .. }
        ));
        assert!(matches!(
            classify_code(t(), "26", m()),
            AuditError::Corrupt { .. }
        ));
        assert!(matches!(
            classify_code(t(), "11", m()),
            AuditError::Corrupt { .. }
        ));
        assert!(matches!(
            classify_code(t(), "53100", m()),
            AuditError::Full { .. }
        ));
        assert!(matches!(
            classify_code(t(), "25006", m()),
            AuditError::Unwritable { .. }
        ));
        assert!(matches!(
            classify_code(t(), "08006", m()),
            AuditError::Connection { .. }
        ));
        assert!(matches!(
            classify_code(t(), "XX001", m()),
            AuditError::Corrupt { .. }
        ));
        assert!(matches!(
            classify_code(t(), "23505", m()),
            AuditError::Database { .. }
        ));
    }
}
