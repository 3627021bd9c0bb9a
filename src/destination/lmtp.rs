//! LMTP delivery (RFC 2033), hand-written on the line and dot-stuffing
//! codec POP3 uses (`crate::codec`), over TCP or a Unix socket such as
//! Dovecot's `/run/dovecot/lmtp`.
//!
//! LMTP is SMTP with `LHLO` instead of `EHLO` and one difference that
//! matters: after the message data the server answers once *per accepted
//! recipient* (RFC 2033 section 4.2), so one recipient over quota and
//! another delivered is a partial success, reported per recipient.
//!
//! One connection per run, reused across messages; a connection that
//! broke is dropped and the next message opens a new one. The session is
//! generic over `Read + Write` so the unit tests drive it with scripted
//! bytes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

use crate::codec;
use crate::config::{LmtpConfig, LmtpTarget};
use crate::error::{Error, Failure, Result};
use crate::message::Envelope;
use crate::net;

use super::{sender_of, DeliveryReport, Destination, EnvelopeCheck, Refusal};

/// A server reply: the code and the text of every line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The lines' text after the code, joined with spaces.
    pub text: String,
}

impl Reply {
    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 4xx temporary, 5xx refused for good; any other code in an error
    /// position is not the protocol (a local fault).
    pub fn failure(&self) -> Failure {
        match self.code {
            400..=499 => Failure::Temporary,
            500..=599 => Failure::Refused,
            _ => Failure::Local,
        }
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// Reads one (possibly multi-line) reply (RFC 5321 section 4.2): lines
/// `250-...` continue, `250 ...` ends.
pub fn read_reply<R: BufRead + ?Sized>(r: &mut R) -> io::Result<Reply> {
    let mut text = Vec::new();
    let mut lines = 0;
    loop {
        let line = codec::read_reply(r)?;
        lines += 1;
        if lines > 1000 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "reply of more than 1000 lines",
            ));
        }
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed reply {line:?}"),
            )
        };
        let code: u16 = line
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse().ok())
            .ok_or_else(bad)?;
        let (more, rest) = match line.as_bytes().get(3) {
            Some(b'-') => (true, &line[4..]),
            Some(b' ') => (false, &line[4..]),
            None => (false, ""),
            Some(_) => return Err(bad()),
        };
        text.push(rest.to_string());
        if !more {
            return Ok(Reply {
                code,
                text: text.join(" "),
            });
        }
    }
}

/// What the server offers after `LHLO`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// `SIZE`, with the limit if given.
    pub size: Option<u64>,
    /// `8BITMIME`.
    pub eight_bit_mime: bool,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
}

/// Parses the `LHLO`/`EHLO` reply's lines (after the first).
pub fn parse_extensions(reply: &Reply) -> Extensions {
    let mut ext = Extensions::default();
    // `text` joins lines with spaces; keywords are the words that start
    // each line, but scanning all words is harmless for these three.
    let words: Vec<&str> = reply.text.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        match w.to_ascii_uppercase().as_str() {
            "SIZE" => {
                ext.size = Some(words.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(0));
            }
            "8BITMIME" => ext.eight_bit_mime = true,
            "SMTPUTF8" => ext.smtputf8 = true,
            _ => {}
        }
    }
    ext
}

/// An LMTP session over any stream.
pub struct Session<S: Read + Write> {
    stream: BufReader<S>,
    /// What the server offered.
    pub extensions: Extensions,
}

impl<S: Read + Write> Session<S> {
    /// Reads the greeting and says `LHLO`.
    pub fn start(stream: S, hostname: &str) -> io::Result<std::result::Result<Session<S>, Reply>> {
        let mut session = Session {
            stream: BufReader::new(stream),
            extensions: Extensions::default(),
        };
        let greeting = read_reply(&mut session.stream)?;
        if greeting.code != 220 {
            return Ok(Err(greeting));
        }
        let reply = session.command(&format!("LHLO {hostname}"))?;
        if reply.code != 250 {
            return Ok(Err(reply));
        }
        session.extensions = parse_extensions(&reply);
        Ok(Ok(session))
    }

    /// Sends one command line and reads its reply.
    pub fn command(&mut self, line: &str) -> io::Result<Reply> {
        let w = self.stream.get_mut();
        w.write_all(line.as_bytes())?;
        w.write_all(b"\r\n")?;
        w.flush()?;
        read_reply(&mut self.stream)
    }

    /// `MAIL FROM` with `SIZE` and `BODY=8BITMIME` as the server allows.
    pub fn mail(&mut self, sender: &str, size: u64, eight_bit: bool) -> io::Result<Reply> {
        let mut line = format!("MAIL FROM:<{sender}>");
        if self.extensions.size.is_some() {
            line.push_str(&format!(" SIZE={size}"));
        }
        if eight_bit && self.extensions.eight_bit_mime {
            line.push_str(" BODY=8BITMIME");
        }
        if !sender.is_ascii() && self.extensions.smtputf8 {
            line.push_str(" SMTPUTF8");
        }
        self.command(&line)
    }

    /// `DATA`, the dot-stuffed message, and one reply per accepted
    /// recipient (`accepted` of them). `Ok(Err(reply))` when DATA itself
    /// was refused.
    pub fn data(
        &mut self,
        message: &[u8],
        accepted: usize,
    ) -> io::Result<std::result::Result<Vec<Reply>, Reply>> {
        let go = self.command("DATA")?;
        if go.code != 354 {
            return Ok(Err(go));
        }
        let mut wire = Vec::with_capacity(message.len() + message.len() / 30 + 8);
        codec::write_dot_block(&mut wire, message)?;
        let w = self.stream.get_mut();
        w.write_all(&wire)?;
        w.flush()?;
        let mut replies = Vec::with_capacity(accepted);
        for _ in 0..accepted {
            replies.push(read_reply(&mut self.stream)?);
        }
        Ok(Ok(replies))
    }
}

/// TCP or a Unix socket.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

/// An open transaction: who was accepted at RCPT TO.
struct Transaction {
    accepted: Vec<String>,
}

/// An LMTP destination.
pub struct Lmtp {
    name: String,
    config: LmtpConfig,
    hostname: String,
    session: Option<Session<Conn>>,
    open: Option<Transaction>,
    /// Whether a transaction ran on this connection (then RSET first).
    used: bool,
}

impl Lmtp {
    /// A destination for `config`; it connects on first use.
    pub fn new(name: &str, config: LmtpConfig, hostname: &str) -> Lmtp {
        Lmtp {
            name: name.to_string(),
            config,
            hostname: hostname.to_string(),
            session: None,
            open: None,
            used: false,
        }
    }

    fn where_(&self) -> String {
        match &self.config.target {
            LmtpTarget::Tcp(s) => format!("{}:{}", s.host, s.port),
            LmtpTarget::Socket(p) => p.display().to_string(),
        }
    }

    fn fail(&self, message: String, failure: Failure) -> Error {
        Error::delivery(self.name.clone(), message, failure)
    }

    fn reply_error(&self, what: &str, reply: &Reply) -> Error {
        self.fail(format!("{what}: {reply}"), reply.failure())
    }

    /// A broken connection: forget it (a new one is made next time) and
    /// say so as a temporary failure.
    fn broken(&mut self, what: &str, e: io::Error) -> Error {
        self.session = None;
        self.open = None;
        self.fail(
            format!("{what} ({}): {e}", self.where_()),
            Failure::Temporary,
        )
    }

    fn connect(&mut self) -> Result<()> {
        if self.session.is_some() {
            return Ok(());
        }
        let conn = match &self.config.target {
            LmtpTarget::Tcp(server) => Conn::Tcp(
                net::connect_tcp(server)
                    .map_err(|e| self.fail(e.to_string(), Failure::Temporary))?,
            ),
            LmtpTarget::Socket(path) => {
                let s = UnixStream::connect(path).map_err(|e| {
                    self.fail(
                        format!("connecting to {}: {e}", path.display()),
                        Failure::Temporary,
                    )
                })?;
                let t = Some(self.config.timeout);
                s.set_read_timeout(t)
                    .and_then(|()| s.set_write_timeout(t))
                    .map_err(|e| {
                        self.fail(format!("{}: {e}", path.display()), Failure::Temporary)
                    })?;
                Conn::Unix(s)
            }
        };
        match Session::start(conn, &self.hostname) {
            Ok(Ok(session)) => {
                self.session = Some(session);
                self.used = false;
                Ok(())
            }
            Ok(Err(reply)) => Err(self.reply_error("greeting or LHLO", &reply)),
            Err(e) => Err(self.broken("greeting", e)),
        }
    }

    fn effective_recipients(&self, envelope: &Envelope) -> Vec<String> {
        super::fixed_or_envelope(&self.config.recipient, envelope)
    }
}

impl Destination for Lmtp {
    fn name(&self) -> &str {
        &self.name
    }

    fn recipients(&self, envelope: &Envelope) -> Vec<String> {
        self.effective_recipients(envelope)
    }

    fn deliver(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        super::deliver_in_two_steps(self, envelope, message)
    }

    fn envelope_check(&mut self) -> Option<&mut dyn EnvelopeCheck> {
        Some(self)
    }

    fn close(&mut self) {
        if let Some(mut s) = self.session.take() {
            let _ = s.command("QUIT");
        }
    }
}

impl EnvelopeCheck for Lmtp {
    fn begin(&mut self, envelope: &Envelope, size: u64, _header: &[u8]) -> Result<DeliveryReport> {
        self.connect()?;
        let recipients = self.effective_recipients(envelope);
        let sender = sender_of(envelope, self.config.sender.as_deref());
        let session = self.session.as_mut().expect("connected above");
        if self.used {
            match session.command("RSET") {
                Ok(r) if r.code == 250 => {}
                Ok(r) => return Err(self.reply_error("RSET", &r)),
                Err(e) => return Err(self.broken("RSET", e)),
            }
        }
        self.used = true;
        // The body is not known yet with headers-first: say 8BITMIME when
        // the server takes it, which is harmless for 7-bit mail.
        let mail = match session.mail(&sender, size, true) {
            Ok(r) => r,
            Err(e) => return Err(self.broken("MAIL FROM", e)),
        };
        if !mail.is_positive() {
            let e = || self.reply_error(&format!("MAIL FROM:<{sender}>"), &mail);
            return Ok(DeliveryReport::none(&recipients, e));
        }
        let mut report = DeliveryReport::default();
        for r in &recipients {
            let session = self.session.as_mut().expect("connected above");
            match session.command(&format!("RCPT TO:<{r}>")) {
                Ok(reply) if reply.is_positive() => report.accepted.push(r.clone()),
                Ok(reply) => report.refused.push(Refusal {
                    recipient: r.clone(),
                    error: self.reply_error(&format!("RCPT TO:<{r}>"), &reply),
                }),
                Err(e) => return Err(self.broken("RCPT TO", e)),
            }
        }
        self.open = Some(Transaction {
            accepted: report.accepted.clone(),
        });
        Ok(report)
    }

    fn finish(&mut self, _envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        let Some(tx) = self.open.take() else {
            return Err(Error::Internal("LMTP finish without begin".into()));
        };
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| Error::Internal("LMTP session gone".into()))?;
        let replies = match session.data(message, tx.accepted.len()) {
            Ok(Ok(replies)) => replies,
            Ok(Err(reply)) => {
                let e = || self.reply_error("DATA", &reply);
                return Ok(DeliveryReport::none(&tx.accepted, e));
            }
            // The connection broke after DATA: some recipients may have
            // the message. We cannot know which, so all are retried
            // (a duplicate beats a loss).
            Err(e) => return Err(self.broken("sending the message", e)),
        };
        let mut report = DeliveryReport::default();
        for (r, reply) in tx.accepted.into_iter().zip(replies) {
            if reply.is_positive() {
                report.accepted.push(r);
            } else {
                let error = self.reply_error(&format!("after DATA for <{r}>"), &reply);
                report.refused.push(Refusal {
                    recipient: r,
                    error,
                });
            }
        }
        Ok(report)
    }

    fn abandon(&mut self) {
        self.open = None;
        // The next `begin` sends RSET; nothing to do now.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    use crate::codec::Script;

    #[test]
    fn multi_line_replies_parse() {
        let mut r = Cursor::new(
            b"250-mx hello\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 PIPELINING\r\n421 bye\r\n"
                .to_vec(),
        );
        let reply = read_reply(&mut r).unwrap();
        assert_eq!(reply.code, 250);
        let ext = parse_extensions(&reply);
        assert_eq!(ext.size, Some(1000));
        assert!(ext.eight_bit_mime && !ext.smtputf8);
        let bye = read_reply(&mut r).unwrap();
        assert!(bye.is_transient());
        assert_eq!(bye.to_string(), "421 bye");
        for bad in [&b"25 x\r\n"[..], b"abc x\r\n", b"250x\r\n"] {
            assert!(
                read_reply(&mut Cursor::new(bad.to_vec())).is_err(),
                "{bad:?}"
            );
        }
        assert!(read_reply(&mut Cursor::new(b"250-unfinished\r\n".to_vec())).is_err());
    }

    #[test]
    fn one_reply_per_recipient_after_data() {
        let server = b"220 lmtp ready\r\n\
            250-localhost\r\n250-8BITMIME\r\n250 SIZE\r\n\
            250 2.1.0 OK\r\n\
            250 2.1.5 OK\r\n\
            354 go\r\n\
            250 2.0.0 <a@x> saved\r\n\
            452 4.2.2 <b@x> over quota\r\n";
        let stream = Script::new(server);
        let mut s = Session::start(stream, "me").unwrap().unwrap();
        assert_eq!(s.extensions.size, Some(0));
        assert!(s.mail("s@x", 42, true).unwrap().is_positive());
        assert!(s.command("RCPT TO:<a@x>").unwrap().is_positive());
        let replies = s.data(b".dot\nline\n", 2).unwrap().unwrap();
        assert_eq!(replies.len(), 2);
        assert!(replies[0].is_positive());
        assert!(replies[1].is_transient());
        let sent = String::from_utf8(s.stream.into_inner().written).unwrap();
        assert_eq!(
            sent,
            "LHLO me\r\nMAIL FROM:<s@x> SIZE=42 BODY=8BITMIME\r\nRCPT TO:<a@x>\r\nDATA\r\n..dot\r\nline\r\n.\r\n"
        );
    }
}
