//! The writer: one task owns every write, so seq and chain stay linear, and commits events
//! in groups (every event waiting when a transaction starts goes into it).
//!
//! Two ways in:
//! - [`AuditLog::append`] returns once the row is committed (or with the reason it could
//!   not be): for decisions that allow, which must be on disk before they are applied, and
//!   for anything whose loss must stop the operation (fail closed).
//! - [`AuditLog::record`] / [`AuditLog::try_record`] queue the event and return: for
//!   high-rate observations. A failed commit of such events is counted in
//!   [`AuditStats::lost`], never silent.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, warn};

use super::{
    AuditError,
    chain::ChainPoint,
    record::NewEntry,
    store::{Prepared, Store, StoreOptions},
};

/// How the log is opened and how the writer batches.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub store: StoreOptions,
    /// Events that may wait for the writer; `record` waits for room past this,
    /// `try_record` drops (and counts).
    pub queue_capacity: usize,
    /// Most events in one transaction.
    pub max_batch: usize,
}

impl AuditConfig {
    pub fn new(store: StoreOptions) -> Self {
        Self {
            store,
            queue_capacity: 65_536,
            max_batch: 4096,
        }
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "Entry is the message sent thousands of times a second; boxing it would allocate for each"
)]
enum Msg {
    Entry {
        row: Prepared,
        reply: Option<oneshot::Sender<Result<ChainPoint, AuditError>>>,
    },
    Flush(oneshot::Sender<Result<(), AuditError>>),
}

#[derive(Default)]
struct Stats {
    committed: AtomicU64,
    lost: AtomicU64,
    dropped: AtomicU64,
    batches: AtomicU64,
    last_error: Mutex<Option<AuditError>>,
}

/// Whether the last transaction committed: `None` when it did, else its error. Changes only
/// when the answer does, so a watcher wakes once per outage and once per recovery.
type Health = watch::Sender<Option<AuditError>>;

/// The writer's counters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditStats {
    /// Events committed.
    pub committed: u64,
    /// Queued events (no one waiting) whose commit failed.
    pub lost: u64,
    /// Events `try_record` could not queue.
    pub dropped: u64,
    /// Transactions committed or attempted.
    pub batches: u64,
    /// The most recent write failure.
    pub last_error: Option<String>,
}

/// A handle on the log and its writer. Cheap to clone; the writer stops when every handle
/// is gone (after committing what was queued).
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    stats: Arc<Stats>,
    health: watch::Receiver<Option<AuditError>>,
    store: Store,
    capacity: usize,
}

impl AuditLog {
    /// Opens (creating if needed) the log and starts its writer on the current tokio
    /// runtime.
    pub async fn open(config: AuditConfig) -> Result<Self, AuditError> {
        let store = Store::open(&config.store).await?;
        Ok(Self::start(store, &config))
    }

    /// Starts a writer on an open store.
    pub fn start(store: Store, config: &AuditConfig) -> Self {
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(Stats::default());
        let (health_tx, health) = watch::channel(None);
        tokio::spawn(run_writer(
            store.clone(),
            rx,
            stats.clone(),
            health_tx,
            config.max_batch.max(1),
        ));
        Self {
            tx,
            stats,
            health,
            store,
            capacity,
        }
    }

    /// Records an event and returns once it is committed: its seq and hash.
    pub async fn append(&self, entry: impl Into<NewEntry>) -> Result<ChainPoint, AuditError> {
        let row = Prepared::new(&entry.into());
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Entry {
                row,
                reply: Some(reply),
            })
            .await
            .map_err(|_| AuditError::Closed)?;
        answer.await.map_err(|_| AuditError::Closed)?
    }

    /// Queues an event (waiting for room if the queue is full) without waiting for its
    /// commit.
    pub async fn record(&self, entry: impl Into<NewEntry>) -> Result<(), AuditError> {
        let row = Prepared::new(&entry.into());
        self.tx
            .send(Msg::Entry { row, reply: None })
            .await
            .map_err(|_| AuditError::Closed)
    }

    /// Queues an event if there is room; never waits. A full queue drops the event and
    /// counts it in [`AuditStats::dropped`].
    pub fn try_record(&self, entry: impl Into<NewEntry>) -> Result<(), AuditError> {
        let row = Prepared::new(&entry.into());
        match self.tx.try_send(Msg::Entry { row, reply: None }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                Err(AuditError::QueueFull {
                    capacity: self.capacity,
                })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(AuditError::Closed),
        }
    }

    /// Waits until every event queued before this call is committed (or failed: then the
    /// error of the transaction that held the flush).
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Flush(reply))
            .await
            .map_err(|_| AuditError::Closed)?;
        answer.await.map_err(|_| AuditError::Closed)?
    }

    pub fn stats(&self) -> AuditStats {
        AuditStats {
            committed: self.stats.committed.load(Ordering::Relaxed),
            lost: self.stats.lost.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            batches: self.stats.batches.load(Ordering::Relaxed),
            last_error: self
                .stats
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(ToString::to_string),
        }
    }

    /// Follows the writer's health: the current value is `None` while the last transaction
    /// committed, else that transaction's error.
    pub fn health(&self) -> watch::Receiver<Option<AuditError>> {
        self.health.clone()
    }

    /// The store, for reads (queries, verify, head).
    pub fn store(&self) -> &Store {
        &self.store
    }
}

async fn run_writer(
    store: Store,
    mut rx: mpsc::Receiver<Msg>,
    stats: Arc<Stats>,
    health: Health,
    max_batch: usize,
) {
    let mut msgs = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut msgs, max_batch).await > 0 {
        let mut rows = Vec::with_capacity(msgs.len());
        let mut replies = Vec::with_capacity(msgs.len());
        let mut flushes = Vec::new();
        for msg in msgs.drain(..) {
            match msg {
                Msg::Entry { row, reply } => {
                    rows.push(row);
                    replies.push(reply);
                }
                Msg::Flush(reply) => flushes.push(reply),
            }
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        match store.append(&rows).await {
            Ok(points) => {
                stats
                    .committed
                    .fetch_add(points.len() as u64, Ordering::Relaxed);
                for (reply, point) in replies.into_iter().zip(points) {
                    if let Some(reply) = reply {
                        // The caller may have given up waiting; the row is committed anyway.
                        let _ = reply.send(Ok(point));
                    }
                }
                for f in flushes {
                    let _ = f.send(Ok(()));
                }
                health.send_if_modified(|h| h.take().is_some());
            }
            Err(e) => {
                let unwaited = replies.iter().filter(|r| r.is_none()).count() as u64;
                stats.lost.fetch_add(unwaited, Ordering::Relaxed);
                error!(error = %e, events = rows.len(), lost = unwaited, "audit write failed");
                if unwaited > 0 {
                    warn!(
                        lost = unwaited,
                        "queued audit events were not recorded (counted in the audit loss counter)"
                    );
                }
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(e.clone()));
                }
                for f in flushes {
                    let _ = f.send(Err(e.clone()));
                }
                health.send_if_modified(|h| {
                    let changed = h.as_ref() != Some(&e);
                    *h = Some(e.clone());
                    changed
                });
                *stats.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        }
    }
}
