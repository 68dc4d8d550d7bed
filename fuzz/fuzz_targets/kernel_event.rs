//! Ring-buffer records as the daemon decodes them: any bytes become one event record, or
//! are reported undecodable; lengths from the kernel never read past their buffers.
//!
//! Each input is tried twice: as the record itself (short and unknown records), and
//! copied over a zeroed record of full size whose kind is chosen by the first byte, so
//! most inputs reach the record builders with arbitrary lengths, flags and text.
#![no_main]

use std::sync::OnceLock;

use interceptor::{daemon, policy::Policy};
use interceptor_common::{ConnectEvent, ExecEvent, OpenEvent};
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy::empty("fuzz"))
}

fuzz_target!(|data: &[u8]| {
    let _ = daemon::decode_record(data, policy());
    let size = size_of::<ExecEvent>()
        .max(size_of::<OpenEvent>())
        .max(size_of::<ConnectEvent>());
    let mut record = vec![0u8; size];
    let n = data.len().min(size);
    record[..n].copy_from_slice(&data[..n]);
    let kind = 1 + u32::from(data.first().copied().unwrap_or(0)) % 4;
    record[..4].copy_from_slice(&kind.to_ne_bytes());
    let decoded = daemon::decode_record(&record, policy());
    // Exec, exec-denied and open records of full size always decode.
    if kind <= 3 {
        assert!(decoded.is_some(), "a full-size record of kind {kind} did not decode");
    }
});
