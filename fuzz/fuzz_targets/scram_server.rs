//! Fuzz target: see `mailretr::fuzzing::scram_server`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailretr::fuzzing::scram_server(data));
