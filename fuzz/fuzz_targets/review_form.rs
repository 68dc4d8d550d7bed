//! The review page's form (approve / deny / grant POSTs): any body parses into one
//! decision or is refused with an error.
#![no_main]

use interceptor::approvals::page;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = page::parse_form(data) {
        assert!(!e.to_string().is_empty());
    }
});
