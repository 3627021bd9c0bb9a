//! A configurable real SMTP server for tests: aiosmtpd (Debian
//! `python3-aiosmtpd`) with STARTTLS or implicit TLS on the shared
//! [`TestCert`](super::TestCert), AUTH PLAIN/LOGIN against one user,
//! recipients it refuses with 550 at RCPT TO, SMTPUTF8 offered or not,
//! 8BITMIME offered or not (without it aiosmtpd takes only ASCII data
//! and no BODY parameter), and a log of every connection and EHLO, so
//! tests can count them. Each message is kept as received
//! (`N.eml`) with its envelope and how it arrived (`N.env`). Missing
//! aiosmtpd fails the test loudly with the package to install.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use super::smtpsink::{start_aiosmtpd, PYTHON};
use super::TestCert;

/// How the server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain text only; no STARTTLS offered (a stripping server).
    None,
    /// STARTTLS offered, and required before MAIL.
    Starttls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    pub tls: Tls,
    /// AUTH with this user and password (PLAIN and LOGIN offered); AUTH is
    /// then required before MAIL.
    pub auth: Option<(String, String)>,
    /// Whether AUTH is offered before TLS (aiosmtpd's `auth_require_tls`
    /// turned off).
    pub auth_without_tls: bool,
    /// AUTH mechanisms not offered (e.g. `"PLAIN"` to force LOGIN).
    pub exclude_mechanisms: Vec<String>,
    /// Recipients refused with `550 5.1.1` at RCPT TO.
    pub refuse: Vec<String>,
    /// SMTPUTF8 offered (aiosmtpd's `enable_SMTPUTF8`).
    pub smtputf8: bool,
    /// 8BITMIME offered. Without it (aiosmtpd's `decode_data`) the
    /// server answers 500 to 8-bit data and 555 to `BODY=`.
    pub eight_bit_mime: bool,
    /// The certificate for TLS.
    pub cert: TestCert,
    /// Require a TLS client certificate issued by this CA (PEM). Only
    /// with `Tls::Starttls`: aiosmtpd's own start-up probe of an
    /// implicit-TLS port has no certificate.
    pub client_ca: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: Tls::None,
            auth: None,
            auth_without_tls: false,
            exclude_mechanisms: Vec::new(),
            refuse: Vec::new(),
            smtputf8: false,
            eight_bit_mime: true,
            cert: TestCert::shared().clone(),
            client_ca: None,
        }
    }
}

/// A running aiosmtpd.
pub struct Smtpd {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: PathBuf,
}

const SERVER: &str = r#"
import json, os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
port, out, opts = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
SMTP.line_length_limit = 1 << 20
READY = False
def log(name, line):
    with open(os.path.join(out, name), "a") as f:
        f.write(line + "\n")
class Server(SMTP):
    def connection_made(self, transport):
        # Called again after STARTTLS; count TCP connections only.
        if READY and self._original_transport is None:
            log("connections", repr(transport.get_extra_info("peername")))
        super().connection_made(transport)
    async def smtp_EHLO(self, hostname):
        if READY:
            so = self.transport.get_extra_info("ssl_object")
            tls = so is not None
            # The client certificate's subject, when one was required.
            peer = so.getpeercert() if so is not None and opts["client_ca"] else None
            client = ""
            if peer:
                client = " client=" + ",".join("%s=%s" % kv for rdn in peer["subject"] for kv in rdn)
            log("ehlo", "EHLO %s tls=%s%s" % (hostname, tls, client))
        await super().smtp_EHLO(hostname)
class Handler:
    n = 0
    async def handle_RCPT(self, server, session, envelope, address, options):
        if address in opts["refuse"]:
            return "550 5.1.1 <%s>: no such user here" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"
    async def handle_RSET(self, server, session, envelope):
        log("rset", "RSET")
        return "250 OK"
    async def handle_DATA(self, server, session, envelope):
        Handler.n += 1
        tls = server.transport.get_extra_info("ssl_object") is not None
        with open(os.path.join(out, "%d.env" % Handler.n), "w") as f:
            f.write(envelope.mail_from + "\n" + "\n".join(envelope.rcpt_tos) + "\n"
                    + " ".join(envelope.mail_options) + "\n"
                    + "tls=%s auth=%s\n" % (tls, session.authenticated))
        with open(os.path.join(out, "%d.eml" % Handler.n), "wb") as f:
            f.write(envelope.original_content)
        return "250 OK"
def authenticator(server, session, envelope, mechanism, data):
    if not isinstance(data, LoginPassword):
        return AuthResult(success=False, handled=False)
    user, password = data.login.decode(), data.password.decode()
    log("auth", "%s %s %s" % (mechanism, user, password))
    return AuthResult(success=[user, password] == opts["auth"], handled=False)
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(opts["cert"], opts["key"])
if opts["client_ca"]:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(opts["client_ca"])
kw = dict(enable_SMTPUTF8=opts["smtputf8"], decode_data=not opts["eight_bit_mime"])
if opts["tls"] == "starttls":
    kw.update(tls_context=ctx, require_starttls=True)
if opts["auth"]:
    kw.update(authenticator=authenticator, auth_required=True,
              # aiosmtpd counts only STARTTLS as TLS; implicit TLS is TLS too.
              auth_require_tls=not opts["auth_without_tls"] and opts["tls"] != "implicit",
              auth_exclude_mechanism=opts["exclude"])
class Ctl(Controller):
    def factory(self):
        return Server(self.handler, **self.SMTP_kwargs)
c = Ctl(Handler(), hostname="127.0.0.1", port=port,
        ssl_context=ctx if opts["tls"] == "implicit" else None, **kw)
c.start()
READY = True
open(os.path.join(out, "ready"), "w").close()
while True:
    time.sleep(3600)
"#;

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Smtpd {
    /// Starts a server keeping what it receives under `dir`.
    pub fn start(dir: &Path, options: Options) -> Smtpd {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        fs::create_dir_all(dir).unwrap();
        let script = dir.join("smtpd.py");
        fs::write(&script, SERVER).unwrap();
        let out = dir.join("mail");
        fs::create_dir_all(&out).unwrap();
        let opts = format!(
            r#"{{"tls": {tls}, "auth": {auth}, "auth_without_tls": {awt}, "refuse": [{refuse}], "exclude": [{exclude}], "smtputf8": {utf8}, "eight_bit_mime": {mime8}, "cert": {cert}, "key": {key}, "client_ca": {client_ca}}}"#,
            tls = json_str(match options.tls {
                Tls::None => "none",
                Tls::Starttls => "starttls",
                Tls::Implicit => "implicit",
            }),
            auth = match &options.auth {
                Some((u, p)) => format!("[{}, {}]", json_str(u), json_str(p)),
                None => "null".into(),
            },
            awt = options.auth_without_tls,
            utf8 = options.smtputf8,
            mime8 = options.eight_bit_mime,
            refuse = options
                .refuse
                .iter()
                .map(|r| json_str(r))
                .collect::<Vec<_>>()
                .join(", "),
            exclude = options
                .exclude_mechanisms
                .iter()
                .map(|m| json_str(m))
                .collect::<Vec<_>>()
                .join(", "),
            cert = json_str(&options.cert.cert_pem.to_string_lossy()),
            key = json_str(&options.cert.key_pem.to_string_lossy()),
            client_ca = match &options.client_ca {
                Some(p) => json_str(&p.to_string_lossy()),
                None => "null".into(),
            },
        );
        // The script writes `ready` once aiosmtpd listens (after its own
        // probe connection).
        let ready = out.join("ready");
        let child = start_aiosmtpd(
            Command::new(PYTHON)
                .arg(&script)
                .arg(port.to_string())
                .arg(&out)
                .arg(opts),
            port,
            || ready.exists(),
        );
        Smtpd {
            child,
            port,
            dir: out,
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

    /// The envelope of message `n` (1-based): sender, recipients, MAIL
    /// options, and a `tls=True|False auth=...` line.
    pub fn envelope(&self, n: usize) -> String {
        fs::read_to_string(self.dir.join(format!("{n}.env"))).unwrap()
    }

    /// TCP connections accepted since the server started.
    pub fn connections(&self) -> usize {
        fs::read_to_string(self.dir.join("connections"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Every EHLO: `EHLO name tls=True|False` per line.
    pub fn ehlo_log(&self) -> String {
        fs::read_to_string(self.dir.join("ehlo")).unwrap_or_default()
    }

    /// How many RSET commands it was sent.
    pub fn rsets(&self) -> usize {
        fs::read_to_string(self.dir.join("rset"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Every AUTH attempt: `MECHANISM user password` per line.
    pub fn auth_log(&self) -> String {
        fs::read_to_string(self.dir.join("auth")).unwrap_or_default()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
