//! Fuzz target: see `mailretr::fuzzing::lmtp_reply`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailretr::fuzzing::lmtp_reply(data));
