//! An ADS stream's body comes from the network: whatever bytes arrive,
//! in whatever frames, reading them must never panic, and must read the
//! same requests (or fail the same way) however the bytes are split.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weft_control::server::check_request_framing(data);
});
