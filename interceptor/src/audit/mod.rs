//! The audit log: every agent exec, matched open, decision, approval step, grant, policy
//! reload, daemon lifecycle event and loss counter, in a hash-chained table in SQLite (WAL,
//! default `/var/lib/interceptor/audit.db`) or PostgreSQL.
//!
//! - [`record`]: the typed events ([`AuditEvent`]) and the indexed columns derived from them;
//! - [`chain`]: the row hash (SHA-256, domain-separated, over a length-prefixed canonical
//!   encoding) and the verifier that names the first bad row;
//! - [`store`]: the sqlx backends, embedded migrations, appends, reads, prune;
//! - [`log`]: the single writer with group commit ([`AuditLog::append`] waits for the
//!   commit, [`AuditLog::record`] does not);
//! - [`query`]: filters and the time forms people type;
//! - [`export`]: JSON lines and OCSF for SIEMs;
//! - [`evidence`]: the per-control evidence bundle for auditors (md, html, csv);
//! - [`cli`]: `interceptor audit ...`.
//!
//! The daemon opens an [`AuditLog`] from an [`AuditConfig`] at start, `append`s every
//! decision before applying it (an error means the operation must fail closed), and
//! `record`s high-rate observations. Operators' docs: `docs/audit.md`.

pub mod chain;
pub mod cli;
mod error;
pub mod evidence;
pub mod export;
pub mod log;
pub mod query;
pub mod record;
pub mod store;

#[cfg(test)]
mod tests;

pub use chain::{BreakKind, ChainBreak, ChainPoint, ChainState, VerifyReport};
pub use error::AuditError;
pub use log::{AuditConfig, AuditLog, AuditStats};
pub use query::Filter;
pub use record::{
    ApprovalAudit, ApprovalStep, AuditEvent, DaemonAudit, DaemonStep, DecidedBy, DecisionAudit,
    ExecAudit, GrantAudit, GrantStep, GuardAudit, LossAudit, NewEntry, OpenAudit, Outcome,
    PolicyReloadAudit, ProcessInfo, PruneAudit, StoredRow,
};
pub use store::{AuditTarget, DEFAULT_SQLITE_PATH, PruneReport, Store, StoreOptions, Synchronous};
