//! interceptor: Action-Level Approvals for AI agents on Linux.
//!
//! Kernel programs (interceptor-ebpf) track agent process trees and decide their execs;
//! this crate is the daemon and CLI around them:
//! - [`audit`]: the tamper-evident audit log and `interceptor audit`;
//! - [`btf`]: kernel struct offsets from the running kernel's BTF;
//! - [`loader`]: loading the programs and choosing the backend (lsm or tracepoint);
//! - [`listener_guard`]: agents cannot connect to the daemon's HTTP (approval) listener;
//! - [`policy`]: the exec rule list and its compilation to kernel map entries;
//! - [`open_rules`]: open rules and their kernel map entries;
//! - [`daemon`]: events, holds, approvals, the control socket server;
//! - [`journal`]: the audit rows the daemon writes for what it sees and decides;
//! - [`control`]: the control socket protocol and client;
//! - [`doctor`]: what this host can enforce;
//! - [`procfs`]: /proc readers and pidfd signalling;
//! - [`scope`]: agents by uid and cgroup;
//! - [`metrics`]: Prometheus counters and their text rendering;
//! - [`http`]: the HTTP listener (`/metrics`, `/healthz`);
//! - [`cli`]: the command line.

pub mod approvals;
pub mod audit;
pub mod btf;
pub mod cli;
pub mod cli_docs;
pub mod config;
pub mod control;
pub mod daemon;
pub mod doctor;
pub mod http;
pub mod journal;
pub mod listener_guard;
pub mod loader;
pub mod metrics;
pub mod open_rules;
pub mod policy;
pub mod procfs;
pub mod scope;
pub mod systemd;
