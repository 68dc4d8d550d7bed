//! The generic JSON webhook's signature, so a receiver can tell a request the daemon sent
//! from a forged or replayed one.
//!
//! Every delivery carries two headers:
//!
//! ```text
//! X-Interceptor-Timestamp: 1790000000
//! X-Interceptor-Signature: v1=<hex HMAC-SHA256(secret, "v1:" + timestamp + ":" + body)>
//! ```
//!
//! The timestamp is inside the signed string, so a receiver that rejects old timestamps
//! also rejects replays of old deliveries. The scheme is the same shape as Slack's `v0`
//! (see [`super::slack::verify_request`]), which shares [`verify_scheme`] with it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header holding the Unix time (seconds) the delivery was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Interceptor-Timestamp";
/// The header holding `v1=<hex digest>`.
pub const SIGNATURE_HEADER: &str = "X-Interceptor-Signature";
/// The signature scheme this module writes; a receiver rejects any other.
pub const VERSION: &str = "v1";
/// How far a timestamp may be from the receiver's clock, either way, by default.
pub const DEFAULT_WINDOW_SECS: u64 = 300;

/// Why a signed request was refused. The variants say what to fix (a clock, a secret, a
/// proxy rewriting the body) without echoing the request back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the timestamp header is missing or empty")]
    MissingTimestamp,
    #[error("the timestamp header is not a Unix time in whole seconds")]
    MalformedTimestamp,
    #[error("the request was signed {age_secs}s ago, outside the {window_secs}s window")]
    Stale { age_secs: u64, window_secs: u64 },
    #[error("the request is dated {ahead_secs}s in the future, outside the {window_secs}s window")]
    Future { ahead_secs: u64, window_secs: u64 },
    #[error("the signature header is missing or empty")]
    MissingSignature,
    #[error("the signature header is not `{expected}=<64 hex digits>`")]
    MalformedSignature { expected: &'static str },
    #[error("the signature is version {found:?}; this receiver knows {expected}")]
    UnknownVersion {
        found: String,
        expected: &'static str,
    },
    #[error("the signature does not match (wrong secret, or the body or timestamp was changed)")]
    Mismatch,
}

/// The `X-Interceptor-Signature` value for `body` sent at `timestamp` (Unix seconds).
///
/// Sign the exact bytes that go on the wire: a receiver verifies the raw body, before any
/// JSON parsing.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let digest = mac(secret, VERSION, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("{VERSION}={}", hex::encode(digest))
}

/// Checks a delivery as a receiver would: the timestamp is within `window_secs` of
/// `now_secs` either way, and the signature is ours over that timestamp and the raw
/// `body`, compared in constant time.
pub fn verify(
    secret: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: u64,
    window_secs: u64,
) -> Result<(), SignatureError> {
    verify_scheme(
        VERSION,
        secret,
        timestamp_header,
        signature_header,
        body,
        now_secs,
        window_secs,
    )
}

/// HMAC-SHA256 of `version:timestamp:body`, the base string of both our scheme and
/// Slack's.
fn mac(secret: &[u8], version: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // RFC 2104 defines HMAC for keys of any length (long keys are hashed first), and the
    // hmac crate only returns InvalidLength for fixed-key-size MACs.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(version.as_bytes());
    mac.update(b":");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// A `version=<hex>` scheme over `version:timestamp:body` with a freshness window:
/// ours with `v1`, Slack's with `v0`.
///
/// The timestamp is checked before the signature so a replay reports `Stale` (a clock or
/// a replay to look into) rather than `Mismatch`; the comparison itself is the hmac
/// crate's constant-time `verify_slice`.
pub(crate) fn verify_scheme(
    version: &'static str,
    secret: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: u64,
    window_secs: u64,
) -> Result<(), SignatureError> {
    if timestamp_header.is_empty() {
        return Err(SignatureError::MissingTimestamp);
    }
    // Digits only: `u64::from_str` would also take `+123`, and the signed string must be
    // the header exactly as sent.
    if timestamp_header.len() > 20 || !timestamp_header.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedTimestamp);
    }
    let timestamp: u64 = timestamp_header
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp)?;

    if signature_header.is_empty() {
        return Err(SignatureError::MissingSignature);
    }
    let malformed = SignatureError::MalformedSignature { expected: version };
    let Some((found, digest_hex)) = signature_header.split_once('=') else {
        return Err(malformed);
    };
    if found != version {
        let looks_versioned = found.len() <= 8
            && found.starts_with('v')
            && found.len() > 1
            && found[1..].bytes().all(|b| b.is_ascii_digit());
        return Err(if looks_versioned {
            SignatureError::UnknownVersion {
                found: found.to_string(),
                expected: version,
            }
        } else {
            malformed
        });
    }
    if digest_hex.len() != 64 {
        return Err(malformed);
    }
    let digest = hex::decode(digest_hex).map_err(|_| malformed.clone())?;

    if now_secs > timestamp && now_secs - timestamp > window_secs {
        return Err(SignatureError::Stale {
            age_secs: now_secs - timestamp,
            window_secs,
        });
    }
    if timestamp > now_secs && timestamp - now_secs > window_secs {
        return Err(SignatureError::Future {
            ahead_secs: timestamp - now_secs,
            window_secs,
        });
    }

    mac(secret, version, timestamp_header, body)
        .verify_slice(&digest)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec-test-0123456789";
    const NOW: u64 = 1_790_000_000;
    const BODY: &[u8] = br#"{"type":"interceptor.approval_request","version":1}"#;

    fn check(ts: &str, sig: &str, body: &[u8], now: u64) -> Result<(), SignatureError> {
        verify(SECRET, ts, sig, body, now, DEFAULT_WINDOW_SECS)
    }

    #[test]
    fn a_signed_delivery_verifies() {
        let sig = sign(SECRET, NOW, BODY);
        assert!(sig.starts_with("v1="), "{sig}");
        assert_eq!(sig.len(), 3 + 64);
        assert_eq!(check(&NOW.to_string(), &sig, BODY, NOW), Ok(()));
        // Anywhere inside the window, either way (clocks drift).
        assert_eq!(check(&NOW.to_string(), &sig, BODY, NOW + 300), Ok(()));
        assert_eq!(check(&NOW.to_string(), &sig, BODY, NOW - 300), Ok(()));
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_version_timestamp_and_body() {
        // The same computation a receiver does with openssl (docs/approvals.md):
        // printf 'v1:1790000000:hello' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sign(b"key", 1_790_000_000, b"hello"),
            "v1=7b023b541c6964c80a48779b31dd2353960e5515dfc89eca04aa8367cb75fbaa"
        );
    }

    #[test]
    fn a_forged_body_is_a_mismatch() {
        let sig = sign(SECRET, NOW, BODY);
        let forged = br#"{"type":"interceptor.approval_request","version":2}"#;
        assert_eq!(
            check(&NOW.to_string(), &sig, forged, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_wrong_secret_is_a_mismatch() {
        let sig = sign(b"another secret", NOW, BODY);
        assert_eq!(
            check(&NOW.to_string(), &sig, BODY, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_changed_timestamp_is_a_mismatch() {
        // Moving a captured delivery's timestamp into the window breaks its signature.
        let sig = sign(SECRET, NOW - 3600, BODY);
        assert_eq!(
            check(&NOW.to_string(), &sig, BODY, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&format!("0{NOW}"), &sign(SECRET, NOW, BODY), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_even_when_signed() {
        let old = NOW - 301;
        assert_eq!(
            check(&old.to_string(), &sign(SECRET, old, BODY), BODY, NOW),
            Err(SignatureError::Stale {
                age_secs: 301,
                window_secs: 300
            })
        );
        let ahead = NOW + 301;
        assert_eq!(
            check(&ahead.to_string(), &sign(SECRET, ahead, BODY), BODY, NOW),
            Err(SignatureError::Future {
                ahead_secs: 301,
                window_secs: 300
            })
        );
        // A zero window accepts only the same second.
        let sig = sign(SECRET, NOW, BODY);
        assert_eq!(verify(SECRET, &NOW.to_string(), &sig, BODY, NOW, 0), Ok(()));
        assert!(verify(SECRET, &NOW.to_string(), &sig, BODY, NOW + 1, 0).is_err());
    }

    #[test]
    fn malformed_headers_are_named() {
        let sig = sign(SECRET, NOW, BODY);
        let ts = NOW.to_string();
        let malformed = Err(SignatureError::MalformedSignature { expected: "v1" });
        assert_eq!(
            check("", &sig, BODY, NOW),
            Err(SignatureError::MissingTimestamp)
        );
        for bad in [
            "+1790000000",
            "1790000000.5",
            " 1790000000",
            "-1",
            "abc",
            "99999999999999999999999",
        ] {
            assert_eq!(
                check(bad, &sig, BODY, NOW),
                Err(SignatureError::MalformedTimestamp),
                "{bad}"
            );
        }
        assert_eq!(
            check(&ts, "", BODY, NOW),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(check(&ts, &sig[3..], BODY, NOW), malformed, "no version");
        assert_eq!(check(&ts, "v1=", BODY, NOW), malformed);
        assert_eq!(
            check(&ts, &sig[..sig.len() - 2], BODY, NOW),
            malformed,
            "truncated"
        );
        assert_eq!(
            check(&ts, &format!("{sig}00"), BODY, NOW),
            malformed,
            "too long"
        );
        let not_hex = format!("v1={}", "zz".repeat(32));
        assert_eq!(check(&ts, &not_hex, BODY, NOW), malformed);
        assert_eq!(check(&ts, &format!("{sig},{sig}"), BODY, NOW), malformed);
        assert_eq!(check(&ts, "sha256=abc", BODY, NOW), malformed);
        assert_eq!(
            check(&ts, &sig.replacen("v1=", "v2=", 1), BODY, NOW),
            Err(SignatureError::UnknownVersion {
                found: "v2".into(),
                expected: "v1"
            })
        );
    }

    #[test]
    fn uppercase_hex_is_the_same_signature() {
        let sig = sign(SECRET, NOW, BODY);
        let upper = format!("v1={}", sig[3..].to_ascii_uppercase());
        assert_eq!(check(&NOW.to_string(), &upper, BODY, NOW), Ok(()));
    }
}
