//! Untrusted configuration end to end: bytes → documents → objects →
//! admission rules → analyzers. Any panic, hang or runaway allocation is a
//! bug; errors are the expected outcome for most inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weft_config::fuzzing::load_validate_analyze(data, |resources, issues| {
        let _ = weft_analyze::analyze(resources, issues, &Default::default());
    });
});
