//! Revocable remember tokens (`selector.validator`) from arbitrary text.
//!
//! Invariants (in `axum_latch::fuzzing::remember_token`): no panic; the store is
//! asked about a token exactly when it is 45 characters, two canonical
//! base64url encodings of 16 bytes around a `.` (so nothing else reaches the
//! store, and no two spellings name the same token); the validator decodes
//! to the bytes it encodes; the rotated token is again such a token, with
//! the same selector.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    axum_latch::fuzzing::remember_token(input);
});
