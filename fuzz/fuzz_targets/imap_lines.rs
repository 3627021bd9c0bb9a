//! Fuzz target: see `mailretr::fuzzing::imap_lines`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailretr::fuzzing::imap_lines(data));
