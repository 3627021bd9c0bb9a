//! Fuzz target: see `mailretr::fuzzing::headers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailretr::fuzzing::headers(data));
