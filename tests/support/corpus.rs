//! Deterministic test messages, all with LF line endings (as Dovecot stores
//! them) and unique `Message-ID` headers: [`awkward`] edge cases for
//! transparency (dot-stuffing, `From ` lines, missing final newline, 8-bit
//! bodies, huge lines, MIME), [`big`] single large messages, and
//! [`realistic`] mailboxes with a real-world size mix. The same arguments
//! always give the same bytes.

/// A small, fast, deterministic PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi` exclusive; `lo` if the range is empty).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len())]
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (with padding) of `data`, without line breaks.
pub fn base64(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    push_base64(&mut out, data);
    String::from_utf8(out).unwrap()
}

/// Appends the base64 of `data` to `out`.
fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    let enc = |n: u32, i: u32| B64[((n >> (18 - 6 * i)) & 63) as usize];
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend_from_slice(&[enc(n, 0), enc(n, 1), enc(n, 2), enc(n, 3)]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[enc(n, 0), enc(n, 1), b'=', b'=']);
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend_from_slice(&[enc(n, 0), enc(n, 1), enc(n, 2), b'=']);
        }
        _ => {}
    }
}

/// Appends `len` random bytes as base64 lines of 76 characters.
fn push_base64_lines(out: &mut Vec<u8>, rng: &mut Rng, len: usize) {
    let mut raw = [0u8; 57];
    let mut left = len;
    out.reserve(len / 57 * 77 + 80);
    while left > 0 {
        let n = left.min(57);
        rng.fill(&mut raw[..n]);
        push_base64(out, &raw[..n]);
        out.push(b'\n');
        left -= n;
    }
}

const WORDS: &[&str] = &[
    "the",
    "mail",
    "server",
    "retrieve",
    "message",
    "folder",
    "quarterly",
    "report",
    "meeting",
    "tomorrow",
    "please",
    "attached",
    "find",
    "invoice",
    "project",
    "update",
    "thanks",
    "regards",
    "deadline",
    "review",
    "draft",
    "budget",
    "schedule",
    "lunch",
    "coffee",
    "release",
    "notes",
    "bug",
    "fix",
    "deploy",
    "weekend",
    "café",
    "naïve",
    "résumé",
    "Zürich",
    "and",
    "of",
    "to",
    "in",
    "for",
    "with",
    "on",
    "at",
    "by",
    "from",
    "about",
    "into",
    "over",
    "after",
];

/// Appends lines of plain text (at most 76 characters) until `target`
/// bytes have been added. Now and then a line starts with `.` or `From `.
fn push_text(out: &mut Vec<u8>, rng: &mut Rng, target: usize) {
    let end = out.len() + target;
    while out.len() < end {
        let mut line = String::new();
        match rng.range(0, 100) {
            0 => line.push_str(". "),
            1 => line.push_str("From "),
            _ => {}
        }
        let width = rng.range(20, 72);
        while line.len() < width {
            if !line.is_empty() && !line.ends_with(' ') {
                line.push(' ');
            }
            let word: &str = rng.pick::<&str>(WORDS);
            line.push_str(word);
        }
        let room = end.saturating_sub(out.len()).max(1);
        if line.len() + 1 > room {
            // Cut on a char boundary so the text stays valid UTF-8.
            let mut cut = room - 1;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
}

fn headers(message_id: &str, subject: &str, extra: &str) -> String {
    format!(
        "From: Alice Example <alice@example.test>\n\
         To: Bob Example <bob@example.test>\n\
         Subject: {subject}\n\
         Date: Tue, 02 Jan 2024 10:00:00 +0000\n\
         Message-ID: <{message_id}@corpus.test>\n\
         MIME-Version: 1.0\n\
         {extra}"
    )
}

/// Edge cases for mail transparency, as `(name, message)` pairs with LF
/// line endings. Names: `plain`, `dot-lines`, `dot-last-line`, `from-lines`,
/// `no-final-newline`, `8bit-utf8`, `8bit-latin1`, `long-line` (one 20 KB
/// line), `multipart` (base64 attachment), `empty-body` (headers and the
/// blank line only).
pub fn awkward() -> Vec<(String, Vec<u8>)> {
    let text = "Content-Type: text/plain; charset=us-ascii\n\n";
    let mut msgs: Vec<(&str, Vec<u8>)> = Vec::new();

    msgs.push((
        "plain",
        format!(
            "{}Hello Bob,\n\nthis is a plain message.\n\n-- \nAlice\n",
            headers("awkward-plain", "A plain message", text)
        )
        .into_bytes(),
    ));

    msgs.push((
        "dot-lines",
        format!(
            "{}Lines that need dot-stuffing:\n.\n..\n...\n.leading dot\n..two leading dots\n \
             .space then dot\nend\n",
            headers("awkward-dot-lines", "Dots at line starts", text)
        )
        .into_bytes(),
    ));

    msgs.push((
        "dot-last-line",
        format!(
            "{}The last line of this message is a lone dot:\n.\n",
            headers("awkward-dot-last-line", "Ends with a dot line", text)
        )
        .into_bytes(),
    ));

    msgs.push((
        "from-lines",
        format!(
            "{}From here on, mbox would need quoting.\n>From already quoted\n>>From twice\n\
             From \nFrom: looks like a header\nfrom lower case\n",
            headers("awkward-from-lines", "From lines in the body", text)
        )
        .into_bytes(),
    ));

    msgs.push((
        "no-final-newline",
        format!(
            "{}This message does not end with a newline.",
            headers("awkward-no-final-newline", "No final newline", text)
        )
        .into_bytes(),
    ));

    msgs.push((
        "8bit-utf8",
        format!(
            "{}Grüße aus Zürich! Ça va? Ελληνικά, русский, 日本語, emoji 📬.\n",
            headers(
                "awkward-8bit-utf8",
                "8-bit UTF-8 body",
                "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            )
        )
        .into_bytes(),
    ));

    let mut latin1 = headers(
        "awkward-8bit-latin1",
        "8-bit Latin-1 body",
        "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n",
    )
    .into_bytes();
    // "Grüße, café, naïve, ÿ" in ISO-8859-1: not valid UTF-8.
    latin1.extend_from_slice(b"Gr\xfc\xdfe, caf\xe9, na\xefve, \xff and \xa0nbsp.\n");
    msgs.push(("8bit-latin1", latin1));

    let mut long = headers("awkward-long-line", "One 20 KB line", text).into_bytes();
    long.extend((0..20 * 1024).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36]));
    long.extend_from_slice(b"\nshort line after it\n");
    msgs.push(("long-line", long));

    let mut attachment = Vec::with_capacity(3000);
    attachment.extend(0..=255u8);
    let mut rng = Rng::new(7);
    let mut rest = vec![0u8; 3000 - 256];
    rng.fill(&mut rest);
    attachment.extend_from_slice(&rest);
    let mut multipart = headers(
        "awkward-multipart",
        "Multipart with an attachment",
        "Content-Type: multipart/mixed; boundary=\"=-=corpus-boundary=-=\"\n\n",
    )
    .into_bytes();
    multipart.extend_from_slice(
        b"This is a multi-part message in MIME format.\n\n\
          --=-=corpus-boundary=-=\n\
          Content-Type: text/plain; charset=us-ascii\n\n\
          See the attachment.\n\n\
          --=-=corpus-boundary=-=\n\
          Content-Type: application/octet-stream; name=\"data.bin\"\n\
          Content-Disposition: attachment; filename=\"data.bin\"\n\
          Content-Transfer-Encoding: base64\n\n",
    );
    for line in base64(&attachment).as_bytes().chunks(76) {
        multipart.extend_from_slice(line);
        multipart.push(b'\n');
    }
    multipart.extend_from_slice(b"\n--=-=corpus-boundary=-=--\n");
    msgs.push(("multipart", multipart));

    msgs.push((
        "empty-body",
        headers("awkward-empty-body", "Empty body", text).into_bytes(),
    ));

    msgs.into_iter().map(|(n, m)| (n.to_string(), m)).collect()
}

/// One message of exactly `bytes` bytes (or the minimum of about 800 bytes
/// if less is asked): a short text part and a base64 attachment of random
/// data, like a mailed archive. Its Message-ID is `<big-<bytes>@corpus.test>`.
pub fn big(bytes: usize) -> Vec<u8> {
    let boundary = "=-=big-boundary=-=";
    let head = headers(
        &format!("big-{bytes}"),
        &format!("A big message of {bytes} bytes"),
        &format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\nX-Pad: "),
    );
    let part_head = format!(
        "\n\n--{boundary}\nContent-Type: text/plain; charset=us-ascii\n\n\
         The archive you asked for is attached.\n\n--{boundary}\n\
         Content-Type: application/x-tar; name=\"archive.tar\"\n\
         Content-Disposition: attachment; filename=\"archive.tar\"\n\
         Content-Transfer-Encoding: base64\n\n"
    );
    let tail = format!("\n--{boundary}--\n");
    let fixed = head.len() + part_head.len() + tail.len();
    let avail = bytes.saturating_sub(fixed);
    // Full 76-character lines of base64 (77 bytes with the newline); the
    // remainder pads the X-Pad header.
    let lines = avail / 77;
    let pad = avail % 77;
    let mut out = Vec::with_capacity(fixed + avail);
    out.extend_from_slice(head.as_bytes());
    out.extend(std::iter::repeat_n(b'p', pad));
    out.extend_from_slice(part_head.as_bytes());
    push_base64_lines(&mut out, &mut Rng::new(bytes as u64), lines * 57);
    out.extend_from_slice(tail.as_bytes());
    debug_assert!(bytes < fixed || out.len() == bytes);
    out
}

/// `n` messages with a real-world size mix: 55% 0.4–4 KB plain text, 35%
/// 4–60 KB, 9% 60–600 KB and 1% 0.6–2 MB (the larger ones multipart with a
/// base64 attachment). Message-IDs `<realistic-<seed>-<i>@corpus.test>` and
/// subjects are unique.
pub fn realistic(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let size = match rng.range(0, 100) {
                0..=54 => rng.range(400, 4 * 1024),
                55..=89 => rng.range(4 * 1024, 60 * 1024),
                90..=98 => rng.range(60 * 1024, 600 * 1024),
                _ => rng.range(600 * 1024, 2 * 1024 * 1024),
            };
            realistic_one(&mut rng, seed, i, size)
        })
        .collect()
}

fn realistic_one(rng: &mut Rng, seed: u64, i: usize, size: usize) -> Vec<u8> {
    let subject = format!(
        "[{seed}/{i}] {} {} {}",
        *rng.pick(WORDS),
        *rng.pick(WORDS),
        *rng.pick(WORDS)
    );
    let id = format!("realistic-{seed}-{i}");
    let date = format!(
        "Date: Tue, 02 Jan 2024 {:02}:{:02}:{:02} +0000\n",
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60
    );
    if size < 4 * 1024 {
        let mut out = headers(
            &id,
            &subject,
            "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n",
        )
        .replace("Date: Tue, 02 Jan 2024 10:00:00 +0000\n", &date)
        .into_bytes();
        out.push(b'\n');
        let left = size.saturating_sub(out.len()).max(1);
        push_text(&mut out, rng, left);
        return out;
    }
    let boundary = format!("=-=r{seed}-{i}=-=");
    let mut out = headers(
        &id,
        &subject,
        &format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\n\n"),
    )
    .replace("Date: Tue, 02 Jan 2024 10:00:00 +0000\n", &date)
    .into_bytes();
    out.extend_from_slice(
        format!("--{boundary}\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n")
            .as_bytes(),
    );
    let text = rng.range(300, 2000);
    push_text(&mut out, rng, text);
    out.extend_from_slice(
        format!(
            "\n--{boundary}\nContent-Type: application/pdf; name=\"doc{i}.pdf\"\n\
             Content-Disposition: attachment; filename=\"doc{i}.pdf\"\n\
             Content-Transfer-Encoding: base64\n\n"
        )
        .as_bytes(),
    );
    let closing = boundary.len() + 6;
    let left = size.saturating_sub(out.len() + closing);
    push_base64_lines(&mut out, rng, left / 77 * 57);
    out.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
    out
}
