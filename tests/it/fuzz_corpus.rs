//! Replays the committed corpora of the `cargo fuzz` targets (`fuzz/`)
//! through the same entry points (`mailretr::fuzzing`), on stable Rust:
//! every input a fuzzer kept (and every crash it once found) must still
//! be handled without a panic.

use std::fs;
use std::path::Path;

#[test]
fn every_fuzz_corpus_replays_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in mailretr::fuzzing::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (every fuzz target has a corpus)", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "{}: empty corpus", dir.display());
        for input in &inputs {
            let bytes = fs::read(input).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "{name}: {} panicked", input.display());
        }
        eprintln!("fuzz corpus {name}: {} inputs replayed", inputs.len());
    }
}
