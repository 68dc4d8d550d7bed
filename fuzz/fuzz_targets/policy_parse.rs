//! The policy parser and compiler: any text either loads or is refused with an error that
//! names a place in the file; a loaded policy compiles and judges a command.
#![no_main]

use interceptor::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::parse(text, "fuzz.toml") {
        Ok(policy) => {
            let _ = policy.compile();
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty(), "an empty error for {text:?}");
        }
    }
});
