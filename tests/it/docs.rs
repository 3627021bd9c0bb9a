//! The man page and shell completions under `man/` and `completions/` are
//! generated from the CLI definition and committed. These tests fail when
//! the committed files drift from the CLI; run
//! `MAILRETR_REGENERATE=1 cargo test --test docs` to rewrite them.

use std::path::Path;

fn check(path: &str, generated: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("MAILRETR_REGENERATE").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the CLI; run MAILRETR_REGENERATE=1 cargo test --test docs",
        path.display()
    );
}

#[test]
fn man_page_is_current() {
    check("man/mailretr.1", &mailretr::cli::man_page());
}

#[test]
fn subcommand_man_pages_are_current() {
    for (file, roff) in mailretr::cli::subcommand_man_pages() {
        check(&format!("man/{file}"), &roff);
    }
}

#[test]
fn completions_are_current() {
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "completions/mailretr.bash"),
        (Shell::Zsh, "completions/_mailretr"),
        (Shell::Fish, "completions/mailretr.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut mailretr::cli::command(), "mailretr", &mut out);
        check(file, &out);
    }
}

#[test]
fn binary_prints_the_same_man_page() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailretr"))
        .arg("man")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, mailretr::cli::man_page());
}
