//! The hash chain: how a row's hash is computed, and how a stream of rows is checked.
//!
//! ```text
//! hash(row) = SHA-256( "interceptor.audit.v1\0"
//!                      || u64be(seq) || i64be(time_ms)
//!                      || str(kind) || opt_str(agent) || opt_i64(pid) || opt_str(operation)
//!                      || opt_str(binary) || opt_str(path) || opt_str(action)
//!                      || opt_str(outcome) || opt_str(rule) || opt_str(controls)
//!                      || opt_str(decided_by) || opt_str(approver) || opt_i64(ref_seq)
//!                      || str(payload) || prev_hash[32] )
//! str(s)     = u64be(len(s)) || bytes(s)
//! opt_str(s) = 0x00 when NULL, else 0x01 || str(s)
//! opt_i64(n) = 0x00 when NULL, else 0x01 || i64be(n)
//! ```
//! Every field has a fixed position and a length or presence prefix, so no two different
//! rows encode to the same bytes; the payload is hashed as the exact text stored, never
//! re-serialized JSON. The domain string keeps these hashes apart from any other SHA-256
//! use. The genesis `prev_hash` (row 1's) is 32 zero bytes, [`GENESIS`].
//!
//! The chain's two ends live in the `audit_chain` table, updated in the same transaction
//! as the rows: the head (last seq and hash) and the anchor (the last pruned row's seq and
//! hash; seq 0 and [`GENESIS`] before any prune). [`Verifier`] walks rows in seq order and
//! reports the first row that breaks: an edited row (its hash no longer matches its
//! content), a deleted row (a seq gap), a replaced row (a `prev_hash` that does not match
//! the row before), a truncated tail (the last row is not the recorded head, or not an
//! externally anchored head), a row past the recorded head, and a prune the chain itself
//! does not record. The caller must hand it rows and state from one read snapshot.
//!
//! What this can promise: anyone who changes, removes or inserts rows without also
//! rewriting every later row and the head is caught. Someone with write access to the
//! database can rewrite the whole chain after a point (no secret is involved); only a head
//! exported with `audit head` and kept elsewhere (ticket, WORM store, another host) catches
//! that, for every row up to the exported one.

use sha2::{Digest as _, Sha256};

use super::record::{Columns, StoredRow};

/// Domain separation prefix of every row hash (version 1 of the encoding).
pub const DOMAIN: &[u8] = b"interceptor.audit.v1\0";

/// The `prev_hash` of the first row ever written.
pub const GENESIS: [u8; 32] = [0; 32];

/// The row hash over its canonical encoding (see the module docs).
pub fn row_hash(
    seq: u64,
    time_ms: i64,
    columns: &Columns,
    ref_seq: Option<i64>,
    payload: &str,
    prev_hash: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(seq.to_be_bytes());
    h.update(time_ms.to_be_bytes());
    put_str(&mut h, &columns.kind);
    put_opt_str(&mut h, columns.agent.as_deref());
    put_opt_i64(&mut h, columns.pid);
    put_opt_str(&mut h, columns.operation.as_deref());
    put_opt_str(&mut h, columns.binary.as_deref());
    put_opt_str(&mut h, columns.path.as_deref());
    put_opt_str(&mut h, columns.action.as_deref());
    put_opt_str(&mut h, columns.outcome.as_deref());
    put_opt_str(&mut h, columns.rule.as_deref());
    put_opt_str(&mut h, columns.controls.as_deref());
    put_opt_str(&mut h, columns.decided_by.as_deref());
    put_opt_str(&mut h, columns.approver.as_deref());
    put_opt_i64(&mut h, ref_seq);
    put_str(&mut h, payload);
    h.update(prev_hash);
    h.finalize().into()
}

/// The hash a stored row should have.
pub fn stored_row_hash(row: &StoredRow) -> [u8; 32] {
    row_hash(
        row.seq,
        row.time_ms,
        &row.columns,
        row.ref_seq,
        &row.payload,
        &row.prev_hash,
    )
}

fn put_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

fn put_opt_str(h: &mut Sha256, s: Option<&str>) {
    match s {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            put_str(h, s);
        }
    }
}

fn put_opt_i64(h: &mut Sha256, n: Option<i64>) {
    match n {
        None => h.update([0u8]),
        Some(n) => {
            h.update([1u8]);
            h.update(n.to_be_bytes());
        }
    }
}

/// A position in the chain: a seq and the hash of the row there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainPoint {
    pub seq: u64,
    #[serde(serialize_with = "hex_array")]
    pub hash: [u8; 32],
}

fn hex_array<S: serde::Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

impl ChainPoint {
    /// `SEQ:HEX`, the form `audit head` prints and `audit verify --head` reads.
    pub fn to_token(&self) -> String {
        format!("{}:{}", self.seq, hex::encode(self.hash))
    }

    /// Parses `SEQ:HEX`.
    pub fn parse(token: &str) -> Result<Self, String> {
        let (seq, hash) = token.trim().split_once(':').ok_or_else(|| {
            format!("head {token:?} must be SEQ:HASH, as printed by `interceptor audit head`")
        })?;
        let seq = seq
            .parse()
            .map_err(|_| format!("head {token:?}: {seq:?} is not a row number"))?;
        let bytes = hex::decode(hash)
            .map_err(|_| format!("head {token:?}: the hash is not hexadecimal"))?;
        let hash = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| format!("head {token:?}: the hash must be 64 hex digits (SHA-256)"))?;
        Ok(Self { seq, hash })
    }
}

/// The two recorded ends of the chain (the `audit_chain` row).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainState {
    /// The last row written (seq 0 and [`GENESIS`] for an empty log).
    pub head: ChainPoint,
    /// The last pruned row (seq 0 and [`GENESIS`] before any prune).
    pub anchor: ChainPoint,
}

/// How a row breaks the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The row's content no longer matches its hash: it was edited.
    Edited,
    /// Rows are missing before this seq: deleted.
    Deleted,
    /// The row's `prev_hash` is not the previous row's hash: the row before it was
    /// replaced (content and hash rewritten), or rows were deleted and renumbered.
    Relinked,
    /// Rows at the end are missing: the last row is not the recorded or anchored head.
    Truncated,
    /// The log starts somewhere the prune records do not explain.
    BadAnchor,
    /// An externally anchored head does not match the row at that seq.
    HeadMismatch,
    /// A row after the recorded head (inside one snapshot, where none can be legitimately):
    /// written around the writer, or the head was moved back.
    BeyondHead,
}

impl BreakKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakKind::Edited => "edited",
            BreakKind::Deleted => "deleted",
            BreakKind::Relinked => "relinked",
            BreakKind::Truncated => "truncated",
            BreakKind::BadAnchor => "bad anchor",
            BreakKind::HeadMismatch => "head mismatch",
            BreakKind::BeyondHead => "beyond head",
        }
    }
}

/// The first place the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainBreak {
    /// The first bad (or first missing) row.
    pub seq: u64,
    pub kind: BreakKind,
    pub detail: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "row {} ({}): {}",
            self.seq,
            self.kind.as_str(),
            self.detail
        )
    }
}

/// The outcome of `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Rows checked.
    pub rows: u64,
    /// The first and last seq seen.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub state: ChainState,
    /// The externally anchored head checked, if one was given.
    pub external_head: Option<ChainPoint>,
    /// `None`: the chain is intact.
    pub problem: Option<ChainBreak>,
    pub elapsed_ms: u64,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        match &self.problem {
            None => {
                let mut s = format!(
                    "audit chain intact: {} rows verified (seq {}..={}), head {}",
                    self.rows,
                    self.first_seq.unwrap_or(0),
                    self.last_seq.unwrap_or(0),
                    self.state.head.to_token()
                );
                if self.state.anchor.seq > 0 {
                    s.push_str(&format!(
                        "; rows up to {} were pruned (anchor {})",
                        self.state.anchor.seq,
                        hex::encode(self.state.anchor.hash)
                    ));
                }
                if let Some(h) = &self.external_head {
                    s.push_str(&format!("; matches anchored head {}", h.to_token()));
                }
                s
            }
            Some(b) => format!("audit chain BROKEN at {b}"),
        }
    }
}

/// Checks rows handed to it in seq order; stops at the first break.
pub struct Verifier {
    state: ChainState,
    external: Option<ChainPoint>,
    external_seen: bool,
    /// The expected next seq and prev_hash.
    expect_seq: u64,
    expect_prev: [u8; 32],
    /// The newest prune record seen: (pruned_through_seq, anchor hash hex).
    last_prune: Option<(u64, String)>,
    rows: u64,
    first_seq: Option<u64>,
    problem: Option<ChainBreak>,
}

impl Verifier {
    pub fn new(state: ChainState, external: Option<ChainPoint>) -> Self {
        Self {
            expect_seq: state.anchor.seq + 1,
            expect_prev: state.anchor.hash,
            state,
            external,
            external_seen: false,
            last_prune: None,
            rows: 0,
            first_seq: None,
            problem: None,
        }
    }

    /// The seq after which the next batch starts.
    pub fn last_seq(&self) -> u64 {
        self.expect_seq - 1
    }

    pub fn failed(&self) -> bool {
        self.problem.is_some()
    }

    fn fail(&mut self, seq: u64, kind: BreakKind, detail: String) {
        if self.problem.is_none() {
            self.problem = Some(ChainBreak { seq, kind, detail });
        }
    }

    /// Checks one row; returns false once the chain is broken.
    pub fn push(&mut self, row: &StoredRow) -> bool {
        if self.problem.is_some() {
            return false;
        }
        if row.seq > self.state.head.seq {
            // Rows and head are read in one snapshot and written in one transaction, so a
            // row past the head was not written by the log's writer.
            let detail = format!(
                "row {} is after the recorded head (row {}): it was inserted around the log's writer, or the head was moved back",
                row.seq, self.state.head.seq
            );
            self.fail(row.seq, BreakKind::BeyondHead, detail);
            return false;
        }
        if row.seq != self.expect_seq {
            let detail = if self.rows == 0 && self.state.anchor.seq > 0 {
                format!(
                    "the log should start at row {} (rows up to {} were pruned) but starts at row {}: rows {}..={} were deleted",
                    self.expect_seq,
                    self.state.anchor.seq,
                    row.seq,
                    self.expect_seq,
                    row.seq - 1
                )
            } else {
                format!(
                    "rows {}..={} are missing (deleted); the next row present is {}",
                    self.expect_seq,
                    row.seq.saturating_sub(1),
                    row.seq
                )
            };
            if row.seq < self.expect_seq {
                self.fail(
                    row.seq,
                    BreakKind::BadAnchor,
                    format!(
                        "row {} is at or before the prune anchor (row {}): the anchor was moved",
                        row.seq, self.state.anchor.seq
                    ),
                );
            } else {
                self.fail(self.expect_seq, BreakKind::Deleted, detail);
            }
            return false;
        }
        let actual = stored_row_hash(row);
        if row.hash.as_slice() != actual {
            self.fail(
                row.seq,
                BreakKind::Edited,
                format!(
                    "its content does not match its hash (stored {}, content hashes to {}): the row was edited",
                    hex::encode(&row.hash),
                    hex::encode(actual)
                ),
            );
            return false;
        }
        if row.prev_hash.as_slice() != self.expect_prev {
            let detail = if self.rows == 0 {
                format!(
                    "its prev_hash {} is not the anchor {} recorded for the start of the log",
                    hex::encode(&row.prev_hash),
                    hex::encode(self.expect_prev)
                )
            } else {
                format!(
                    "its prev_hash {} is not row {}'s hash {}: row {} was replaced or rows were renumbered",
                    hex::encode(&row.prev_hash),
                    row.seq - 1,
                    hex::encode(self.expect_prev),
                    row.seq - 1
                )
            };
            let kind = if self.rows == 0 {
                BreakKind::BadAnchor
            } else {
                BreakKind::Relinked
            };
            self.fail(row.seq, kind, detail);
            return false;
        }
        if row.columns.kind == "prune"
            && let Ok(super::record::AuditEvent::Prune(p)) = row.event()
        {
            self.last_prune = Some((p.pruned_through_seq, p.anchor_hash));
        }
        if let Some(ext) = &self.external
            && ext.seq == row.seq
        {
            self.external_seen = true;
            if ext.hash != actual {
                let detail = format!(
                    "the anchored head says {} but the row hashes to {}: the log was rewritten from here or before",
                    hex::encode(ext.hash),
                    hex::encode(actual)
                );
                self.fail(row.seq, BreakKind::HeadMismatch, detail);
                return false;
            }
        }
        self.first_seq.get_or_insert(row.seq);
        self.rows += 1;
        self.expect_seq = row.seq + 1;
        self.expect_prev = actual;
        true
    }

    /// Ends the walk: checks the tail against the head and the anchor against the prune
    /// records.
    pub fn finish(mut self, elapsed_ms: u64) -> VerifyReport {
        let last = self.expect_seq - 1;
        let head = self.state.head.clone();
        if self.problem.is_none() && last != head.seq {
            let detail = format!(
                "the recorded head is row {} but the log ends at row {}: rows {}..={} were removed from the end",
                head.seq,
                last,
                last + 1,
                head.seq
            );
            self.fail(last + 1, BreakKind::Truncated, detail);
        }
        if self.problem.is_none() && self.expect_prev != head.hash {
            let detail = format!(
                "row {} hashes to {} but the recorded head says {}",
                head.seq,
                hex::encode(self.expect_prev),
                hex::encode(head.hash)
            );
            self.fail(head.seq, BreakKind::Truncated, detail);
        }
        let anchor = self.state.anchor.clone();
        if self.problem.is_none() && anchor.seq > 0 {
            match &self.last_prune {
                Some((through, hash))
                    if *through == anchor.seq && *hash == hex::encode(anchor.hash) => {}
                Some((through, hash)) => {
                    let detail = format!(
                        "the newest prune record says the log starts after row {through} (anchor {hash}) but the chain table says after row {} (anchor {})",
                        anchor.seq,
                        hex::encode(anchor.hash)
                    );
                    self.fail(anchor.seq + 1, BreakKind::BadAnchor, detail);
                }
                None => {
                    let detail = format!(
                        "rows up to {} are gone but no prune record explains it",
                        anchor.seq
                    );
                    self.fail(anchor.seq + 1, BreakKind::BadAnchor, detail);
                }
            }
        }
        if self.problem.is_none()
            && let Some(ext) = self.external.clone()
            && !self.external_seen
        {
            if ext.seq > head.seq {
                let detail = format!(
                    "the anchored head is row {} but the log ends at row {}: rows {}..={} were removed from the end",
                    ext.seq,
                    head.seq,
                    head.seq + 1,
                    ext.seq
                );
                self.fail(head.seq + 1, BreakKind::Truncated, detail);
            } else if ext.seq == anchor.seq && ext.seq > 0 {
                if ext.hash != anchor.hash {
                    let detail = format!(
                        "the anchored head matches neither a row nor the prune anchor ({})",
                        hex::encode(anchor.hash)
                    );
                    self.fail(ext.seq, BreakKind::HeadMismatch, detail);
                }
            } else {
                let detail = format!(
                    "row {} was pruned (the log starts after row {}), so this anchored head can no longer be checked; export a newer head after each prune",
                    ext.seq, anchor.seq
                );
                self.fail(ext.seq, BreakKind::HeadMismatch, detail);
            }
        }
        VerifyReport {
            rows: self.rows,
            first_seq: self.first_seq,
            last_seq: (self.rows > 0).then_some(last),
            state: self.state,
            external_head: self.external,
            problem: self.problem,
            elapsed_ms,
        }
    }
}
