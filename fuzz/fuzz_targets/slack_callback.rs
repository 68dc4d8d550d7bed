//! Slack's interactivity callback: the signature check (v0, 5-minute window) and the
//! payload parser. A forged request never verifies; any body parses or is refused.
#![no_main]

use interceptor::approvals::slack;
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"slack-signing-secret-for-fuzzing";
const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let (Some(ts), Some(sig), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        let _ = slack::parse_interaction(data);
        return;
    };
    let (Ok(ts), Ok(sig)) = (std::str::from_utf8(ts), std::str::from_utf8(sig)) else {
        return;
    };
    // Without the secret, an input can only verify by containing Slack's real signature
    // over itself, which the fuzzer cannot compute.
    assert!(
        slack::verify_request(SECRET, ts, sig, body, NOW).is_err(),
        "verified a request the fuzzer signed without the secret: ts={ts:?} sig={sig:?}"
    );
    let _ = slack::parse_interaction(body);
});
