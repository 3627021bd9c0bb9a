//! A real SMTP server for tests: aiosmtpd (Debian `python3-aiosmtpd`)
//! with a handler that keeps each message exactly as received, and a
//! switch that makes it answer 451 after DATA (a relay that is down).
//! Missing aiosmtpd fails the test loudly with the package to install.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's Python, where python3-aiosmtpd lives (not a pyenv shim).
pub const PYTHON: &str = "/usr/bin/python3";

/// A real SMTP server: aiosmtpd (Debian python3-aiosmtpd) with a handler
/// that writes each message's bytes exactly as received (CRLF, unstuffed)
/// to `dir/N.eml` and its envelope to `dir/N.env`.
pub struct SmtpSink {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: PathBuf,
}

const SINK: &str = r#"
import asyncio, os, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
# The corpus has a 20 KB line; Postfix takes such lines, aiosmtpd's
# default (RFC 5321's 1000) would refuse them.
SMTP.line_length_limit = 1 << 20
out = sys.argv[2]
class Handler:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        if os.path.exists(os.path.join(out, "..", "tempfail")):
            return "451 4.3.0 Try again later"
        Handler.n += 1
        with open(os.path.join(out, "%d.env" % Handler.n), "w") as f:
            f.write(envelope.mail_from + "\n" + "\n".join(envelope.rcpt_tos) + "\n" + " ".join(envelope.mail_options) + "\n")
        with open(os.path.join(out, "%d.eml" % Handler.n), "wb") as f:
            f.write(envelope.original_content)
        return "250 OK"
c = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
while True:
    time.sleep(3600)
"#;

/// Starts an aiosmtpd script and waits (at most 20 s) until `ready`
/// says it listens on `port`. A missing aiosmtpd, or a script that dies,
/// fails the test loudly with its stderr and the package to install.
pub fn start_aiosmtpd(command: &mut Command, port: u16, ready: impl Fn() -> bool) -> Child {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e}; apt-get install python3-aiosmtpd"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        if let Ok(Some(_)) = child.try_wait() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!(
                "\n\n*** aiosmtpd did not start (apt-get install python3-aiosmtpd, or run tests/run-all.sh as root) ***\n{err}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "aiosmtpd did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl SmtpSink {
    /// Starts a sink keeping what it receives under `dir`.
    pub fn start(dir: &Path) -> SmtpSink {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        fs::create_dir_all(dir).unwrap();
        let script = dir.join("sink.py");
        fs::write(&script, SINK).unwrap();
        let out = dir.join("mail");
        fs::create_dir_all(&out).unwrap();
        let child = start_aiosmtpd(
            Command::new(PYTHON)
                .arg(&script)
                .arg(port.to_string())
                .arg(&out),
            port,
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        SmtpSink {
            child,
            port,
            dir: out,
        }
    }

    /// From now on, answer every DATA with 451 (`true`) or take it (`false`).
    pub fn set_tempfail(&self, on: bool) {
        let flag = self.dir.join("..").join("tempfail");
        if on {
            fs::write(flag, b"").unwrap();
        } else {
            let _ = fs::remove_file(flag);
        }
    }

    /// Messages received, in arrival order, with LF line endings.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut n = 1;
        let mut out = Vec::new();
        while let Ok(m) = fs::read(self.dir.join(format!("{n}.eml"))) {
            out.push(super::to_lf(&m));
            n += 1;
        }
        out
    }

    /// The envelope of message `n` (1-based): sender, recipients, options.
    pub fn envelope(&self, n: usize) -> String {
        fs::read_to_string(self.dir.join(format!("{n}.env"))).unwrap()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
