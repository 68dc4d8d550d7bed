//! The control socket's request line: any line decodes into one request or is refused with
//! a message that says so.
#![no_main]

use interceptor::control;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    match control::parse_request(line) {
        Ok(request) => {
            // What decodes can be encoded again (the client's side of the protocol).
            serde_json::to_string(&request).expect("a decoded request encodes");
        }
        Err(e) => assert!(e.starts_with("bad request")),
    }
});
