//! A minimal IMAP client for tests: plain TCP to the test Dovecot, one
//! command at a time, literals in answers read by their announced size.
//! Enough to build a folder tree with flagged messages (CREATE, APPEND)
//! and to look at what a destination made of it (LIST, FETCH).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{Dovecot, User};

/// A logged-in IMAP connection.
pub struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

/// One untagged answer: its line(s) with any literals inline.
pub type Untagged = Vec<u8>;

impl Imap {
    /// Logs `user` in on the test Dovecot's plain IMAP port.
    pub fn login(dovecot: &Dovecot, user: &User) -> Imap {
        let tcp = TcpStream::connect(("127.0.0.1", dovecot.imap)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Imap {
            reader: BufReader::new(tcp.try_clone().unwrap()),
            writer: tcp,
            tag: 0,
        };
        let greeting = c.raw_line();
        assert!(greeting.starts_with(b"* OK"), "{greeting:?}");
        c.ok(&format!("LOGIN \"{}\" \"{}\"", user.name, user.password));
        c
    }

    fn raw_line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).unwrap();
        assert!(!line.is_empty(), "IMAP connection closed");
        line
    }

    /// One whole response: a line, and the literals it announces with the
    /// lines that follow them.
    fn response(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line = self.raw_line();
            out.extend_from_slice(&line);
            let trimmed = line.strip_suffix(b"\r\n").unwrap_or(&line);
            let Some(open) = trimmed.iter().rposition(|&b| b == b'{') else {
                return out;
            };
            let Some(n) = trimmed[open + 1..]
                .strip_suffix(b"}")
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse::<usize>().ok())
            else {
                return out;
            };
            let mut literal = vec![0; n];
            self.reader.read_exact(&mut literal).unwrap();
            out.extend_from_slice(&literal);
        }
    }

    /// Sends `command` and returns its untagged answers and the tagged
    /// line.
    pub fn run(&mut self, command: &str) -> (Vec<Untagged>, String) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        write!(self.writer, "{tag} {command}\r\n").unwrap();
        self.read_to(&tag)
    }

    fn read_to(&mut self, tag: &str) -> (Vec<Untagged>, String) {
        let mut untagged = Vec::new();
        loop {
            let r = self.response();
            if r.starts_with(format!("{tag} ").as_bytes()) {
                return (untagged, String::from_utf8_lossy(&r).trim_end().to_string());
            }
            untagged.push(r);
        }
    }

    /// `run`, asserting the answer is OK.
    pub fn ok(&mut self, command: &str) -> Vec<Untagged> {
        let (untagged, done) = self.run(command);
        assert!(done.split(' ').nth(1) == Some("OK"), "{command}: {done}");
        untagged
    }

    /// Creates `folder` (its server name: modified UTF-7, `/` between
    /// levels).
    pub fn create(&mut self, folder: &str) {
        self.ok(&format!("CREATE \"{folder}\""));
    }

    /// Appends `message` (LF line endings; sent with CRLF) to `folder`
    /// with `flags` (e.g. `\Seen \Flagged`).
    pub fn append(&mut self, folder: &str, flags: &str, message: &[u8]) {
        let crlf = super::to_crlf(message);
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        write!(
            self.writer,
            "{tag} APPEND \"{folder}\" ({flags}) {{{}}}\r\n",
            crlf.len()
        )
        .unwrap();
        let go = self.raw_line();
        assert!(
            go.starts_with(b"+"),
            "APPEND: {:?}",
            String::from_utf8_lossy(&go)
        );
        self.writer.write_all(&crlf).unwrap();
        self.writer.write_all(b"\r\n").unwrap();
        let (_, done) = self.read_to(&tag);
        assert!(done.contains(" OK"), "APPEND {folder}: {done}");
    }

    /// The folders `LIST "" "*"` reports, as (attributes, server name).
    pub fn list(&mut self) -> Vec<(String, String)> {
        self.ok("LIST \"\" \"*\"")
            .iter()
            .map(|l| {
                let text = String::from_utf8_lossy(l).trim_end().to_string();
                let attrs = text
                    .split_once('(')
                    .and_then(|(_, r)| r.split_once(')'))
                    .map(|(a, _)| a.to_string())
                    .unwrap_or_default();
                let name = text
                    .rsplit_once(' ')
                    .map(|(_, n)| n.trim_matches('"').to_string())
                    .unwrap_or_default();
                (attrs, name)
            })
            .collect()
    }

    /// Every message in `folder`: its flags (as the server lists them,
    /// `\Recent` left out, sorted) and its bytes with LF line endings,
    /// sorted by bytes.
    pub fn messages(&mut self, folder: &str) -> Vec<(String, Vec<u8>)> {
        self.ok(&format!("EXAMINE \"{folder}\""));
        let mut out: Vec<(String, Vec<u8>)> = self
            .ok("FETCH 1:* (FLAGS BODY.PEEK[])")
            .into_iter()
            .filter(|r| r.windows(5).any(|w| w == b"FETCH"))
            .map(|r| {
                let text = String::from_utf8_lossy(&r).into_owned();
                let flags = text
                    .split_once("FLAGS (")
                    .and_then(|(_, r)| r.split_once(')'))
                    .map(|(f, _)| f.to_string())
                    .unwrap_or_default();
                let mut flags: Vec<&str> = flags
                    .split(' ')
                    .filter(|f| !f.is_empty() && *f != "\\Recent")
                    .collect();
                flags.sort();
                let start = r.windows(3).position(|w| w == b"}\r\n").unwrap() + 3;
                let open = r[..start].iter().rposition(|&b| b == b'{').unwrap();
                let n: usize = std::str::from_utf8(&r[open + 1..start - 3])
                    .unwrap()
                    .parse()
                    .unwrap();
                (flags.join(" "), super::to_lf(&r[start..start + n]))
            })
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }
}
