//! Fuzz target: see `mailretr::fuzzing::mime7bit`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailretr::fuzzing::mime7bit(data));
