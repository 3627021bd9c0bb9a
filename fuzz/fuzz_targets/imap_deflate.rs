//! Fuzz target: see `mailretr::fuzzing::imap_deflate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailretr::fuzzing::imap_deflate(data));
