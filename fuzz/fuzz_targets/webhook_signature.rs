//! The signed callback check: whatever the headers and body, `verify` accepts no signature
//! made without the secret, and accepts `sign`'s own for the same body, not for another.
#![no_main]

use interceptor::approvals::sign;
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef";
const NOW: u64 = 1_800_000_000;
const WINDOW: u64 = 300;

fuzz_target!(|data: &[u8]| {
    // Timestamp header, signature header and body, split at the first two NULs.
    let mut parts = data.splitn(3, |&b| b == 0);
    let (Some(ts), Some(sig), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (Ok(ts), Ok(sig)) = (std::str::from_utf8(ts), std::str::from_utf8(sig)) else {
        return;
    };
    // The fuzzer has no secret: nothing it writes into the headers may verify.
    assert!(
        sign::verify(SECRET, ts, sig, body, NOW, WINDOW).is_err(),
        "accepted a signature made without the secret: ts={ts:?} sig={sig:?}"
    );
    // A genuine signature over this body is accepted, and one bit less is not.
    let good = sign::sign(SECRET, NOW, body);
    assert!(sign::verify(SECRET, &NOW.to_string(), &good, body, NOW, WINDOW).is_ok());
    let mut other = body.to_vec();
    other.push(b'x');
    assert!(sign::verify(SECRET, &NOW.to_string(), &good, &other, NOW, WINDOW).is_err());
});
