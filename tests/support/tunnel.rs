//! Tunnel commands for the `tunnel` key's tests: a python3 relay between
//! its stdin/stdout and a TCP port (what `ssh host nc %h %p` amounts to,
//! without ssh), and the TOML line that uses it.

/// Relays stdin/stdout to `argv[1]:argv[2]` (python3 is on every Debian
/// that runs these tests; netcat is not).
pub const RELAY: &str = r#"
import os, socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while True:
        d = os.read(0, 65536)
        if not d:
            break
        s.sendall(d)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while True:
    d = s.recv(65536)
    if not d:
        break
    while d:
        d = d[os.write(1, d):]
"#;

/// `tunnel = [...]` running `RELAY` to `%h:%p` (the account's host and
/// port, replaced by mailretr).
pub fn relay_line() -> String {
    toml_argv(&["python3", "-c", RELAY, "%h", "%p"])
}

/// `tunnel = [...]` for `argv`.
pub fn toml_argv(argv: &[&str]) -> String {
    let quoted: Vec<String> = argv.iter().map(|a| toml_string(a)).collect();
    format!("tunnel = [{}]", quoted.join(", "))
}

/// A TOML basic string.
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
