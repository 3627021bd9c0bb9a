//! Entry points for the fuzz targets in `fuzz/` and for the stable test
//! that replays their committed corpora (`tests/it/fuzz_corpus.rs`, so CI
//! needs no nightly). Each feeds arbitrary bytes to the parsers of one
//! kind of hostile input (server bytes, headers, config) and must simply
//! return: no panic, no abort, no allocation without bound.

use std::collections::VecDeque;
use std::io::BufReader;
use std::path::Path;

use crate::codec::Script;
use crate::config::Multidrop;
use crate::source::imap::bodies::BodyReader;
use crate::source::pop3::client::{self, Pop3, Status};
use crate::source::RemoteMessage;

/// One fuzz target: its name (its corpus is `fuzz/corpus/NAME`) and entry.
pub type Target = (&'static str, fn(&[u8]));

/// The fuzz targets by name, for the corpus replay.
pub const TARGETS: &[Target] = &[
    ("pop3_session", pop3_session),
    ("imap_bodies", imap_bodies),
    ("imap_starttls", imap_starttls),
    ("scram_server", scram_server),
    ("lmtp_reply", lmtp_reply),
    ("headers", headers),
    ("config", config),
    ("imap_lines", imap_lines),
    ("mime7bit", mime7bit),
    ("imap_deflate", imap_deflate),
];

/// A POP3 server's bytes: greeting (APOP timestamp), CAPA, status lines,
/// multi-line blocks and LIST/UIDL listings.
pub fn pop3_session(data: &[u8]) {
    let Ok(mut session) = Pop3::connect(Script::new(data), "fuzz") else {
        return;
    };
    let _ = client::apop_timestamp(session.greeting());
    let _ = session.capa();
    for _ in 0..16 {
        match session.read_status() {
            Ok(Status::Ok(_)) => {
                let mut block = Vec::new();
                if session.read_block(&mut block, 1 << 20).is_ok() {
                    if let Ok(listing) = client::parse_listing(&block) {
                        for (_, id) in listing {
                            let _ = client::valid_uidl(&id);
                        }
                    }
                }
            }
            Ok(Status::Err(text)) => {
                let _ = crate::error::throttle_signal(&text);
            }
            Err(_) => break,
        }
    }
}

fn remote(uid: u32, size: u64) -> RemoteMessage {
    RemoteMessage {
        folder: "INBOX".into(),
        uid: Some(uid.to_string()),
        uidvalidity: Some(1),
        size,
        number: uid,
        mailbox: Vec::new(),
        flags: String::new(),
    }
}

/// An IMAP server's answers to SELECT with the pipelined size listing,
/// then to UID FETCH BODY[]: the streaming body reader.
pub fn imap_bodies(data: &[u8]) {
    let mut reader = BodyReader::new(Script::new(data), "fuzz");
    let _ = reader.select_and_list(None, "INBOX", "1:*", "(UID RFC822.SIZE)");
    let mut reader = BodyReader::new(Script::new(data), "fuzz");
    if reader
        .send(vec![remote(1, 100), remote(2, 5000), remote(3, 10)])
        .is_err()
    {
        return;
    }
    let mut out = VecDeque::new();
    for _ in 0..8 {
        if reader.is_idle() || reader.receive(&mut out).is_err() {
            break;
        }
    }
}

/// What an IMAP server says before TLS (greeting, CAPABILITY, the
/// answer to STARTTLS).
pub fn imap_starttls(data: &[u8]) {
    let _ = crate::source::imap::starttls::negotiate(Script::new(data));
}

/// SCRAM-SHA-256 server-first and server-final messages (split at the
/// first NUL byte).
pub fn scram_server(data: &[u8]) {
    let (first, last) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    // Keep the fuzzer fast: iteration counts are accepted up to 1,000,000,
    // which is slow in a debug build, so only small ones are tried here.
    if let Some(i) = find(first, b",i=") {
        let digits = first[i + 3..].iter().take_while(|b| b.is_ascii_digit());
        if digits.fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        }) >= 5000
        {
            return;
        }
    }
    let Ok(mut client) =
        crate::scram::ScramClient::with_nonce("user", "pencil", "fyko+d2lbbFgONRv9qkxdawL")
    else {
        return;
    };
    let _ = client.client_first();
    if client.client_final(first).is_ok() {
        let _ = client.verify_server_final(last);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// LMTP/SMTP replies: multi-line, codes, EHLO extensions.
pub fn lmtp_reply(data: &[u8]) {
    let mut reader = BufReader::new(data);
    for _ in 0..16 {
        match crate::destination::lmtp::read_reply(&mut reader) {
            Ok(reply) => {
                let _ = crate::destination::lmtp::parse_extensions(&reply);
                let _ = reply.failure();
            }
            Err(_) => break,
        }
    }
}

/// A message's header block: header values, Return-Path, addresses,
/// multidrop routing (every envelope header, To/Cc, aliases).
pub fn headers(data: &[u8]) {
    use crate::message;
    let _ = message::header_block(data);
    let _ = message::header_hash(data);
    let _ = message::return_path(data);
    for name in ["Message-ID", "Delivered-To", "X-Original-To", "To"] {
        for value in message::header_values(data, name) {
            for address in crate::route::parse_address_list(&value) {
                let _ = message::is_smtp_address(&address);
            }
        }
    }
    let mut aliases = std::collections::BTreeMap::new();
    aliases.insert("sales".to_string(), "anna@kroon.co.za".to_string());
    for (envelope_header, to_cc) in [
        (None, true),
        (Some("X-Original-To".to_string()), false),
        (Some("Delivered-To".to_string()), false),
    ] {
        let multidrop = Multidrop {
            envelope_header,
            to_cc,
            local_domains: vec!["kroon.co.za".into()],
            aliases: aliases.clone(),
        };
        let _ = crate::route::route(data, &multidrop);
    }
}

/// A message converted to 7-bit for an SMTP server without 8BITMIME:
/// what converts must be 7-bit, and a 7-bit message must come back
/// unchanged.
pub fn mime7bit(data: &[u8]) {
    if let Ok(out) = crate::mime7bit::to_7bit(data) {
        assert!(out.is_ascii(), "converted output is not 7-bit");
        if data.is_ascii() {
            assert_eq!(&*out, data, "a 7-bit message was changed");
        }
    }
}

/// A config file's text. (Texts that include other files are left out:
/// the fuzzer is not to read the machine's files.)
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("include") {
        return;
    }
    let _ = crate::config::parse(text, Path::new("/nonexistent/mailretr-fuzz/config.toml"));
}

/// An IMAP server's lines as the `imap` crate gets them: through the
/// mending layer (bare LF, `EXPUNGED`; literals untouched), then the
/// diagnosis of an unparsable line, the `NAMESPACE` and `LIST` readers.
/// The mended bytes are checked: as long, or longer only by the CRs put
/// before bare LFs.
pub fn imap_lines(data: &[u8]) {
    use std::io::Read as _;
    let mut mended = Vec::new();
    let mut traced = crate::source::imap::transcript::Traced::new(data, "fuzz");
    if traced.read_to_end(&mut mended).is_err() {
        return;
    }
    let bare_lfs = data.iter().filter(|&&b| b == b'\n').count();
    assert!(mended.len() <= data.len() + bare_lfs);
    let _ = crate::source::imap::transcript::unparsed_line();
    let _ = crate::source::imap::folders::parse_namespace(&mended);
    for folder in crate::source::imap::folders::parse_list(&mended) {
        let _ = folder.relative_name("INBOX/");
    }
}

/// A server's COMPRESS=DEFLATE stream (the first byte picks the read
/// size): the inflating reader must give at most what was asked for per
/// read (a decompression bomb costs reads, never memory), and the IMAP
/// body reader must cope with whatever it inflates to.
pub fn imap_deflate(data: &[u8]) {
    use crate::net::deflate::{Deflate, Switch};
    use std::io::Read;
    let Some((first, data)) = data.split_first() else {
        return;
    };
    let size = 1 + *first as usize * 64;
    let switch = Switch::new();
    switch.turn_on();
    let mut inflating = Deflate::new(Script::new(data), switch);
    let mut buf = vec![0u8; size];
    let mut total = 0usize;
    // Enough to see a bomb go off, little enough to stay quick.
    while total < 8 << 20 {
        match inflating.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                assert!(n <= size, "inflated past the caller's buffer");
                total += n;
            }
        }
    }
    let switch = Switch::new();
    switch.turn_on();
    let mut reader = BodyReader::new(Deflate::new(Script::new(data), switch), "fuzz");
    let _ = reader.select_and_list(None, "INBOX", "1:*", "(UID RFC822.SIZE)");
}
