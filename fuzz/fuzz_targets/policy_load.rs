//! Any text as a `guard.toml`: loading never panics, and a refusal always names a problem.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = guard_core::Policy::from_toml_str(text) {
        assert!(!e.problems().is_empty());
    }
});
