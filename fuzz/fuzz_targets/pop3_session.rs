//! Fuzz target: see `mailretr::fuzzing::pop3_session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailretr::fuzzing::pop3_session(data));
