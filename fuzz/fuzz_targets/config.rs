//! Fuzz target: see `mailretr::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailretr::fuzzing::config(data));
