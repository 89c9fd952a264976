//! The listener filters read a client's first bytes (TLS ClientHello,
//! HTTP request line) before anything else: hostile input must give an
//! answer, never a panic, for every prefix of it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_proxy::listener::inspect::{client_hello, http_protocol};

fuzz_target!(|data: &[u8]| {
    for end in [data.len() / 2, data.len()] {
        let _ = client_hello(&data[..end]);
        let _ = http_protocol(&data[..end]);
    }
});
