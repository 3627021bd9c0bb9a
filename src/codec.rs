//! The line and dot-stuffing codec shared by the hand-written text
//! protocols (POP3, LMTP): bounded CRLF line reads, dot-terminated
//! multi-line bodies (RFC 1939 section 3, RFC 5321 section 4.5.2), and
//! the reverse for sending.
//!
//! Messages are held in memory with LF line endings (the form Maildir and
//! mbox store); these functions convert to and from CRLF on the wire.

use std::io::{self, BufRead, Write};

/// Longest status or reply line we accept. RFC 2449 allows 512 octets;
/// real servers exceed that, hostile ones never stop.
pub const MAX_REPLY_LINE: usize = 64 * 1024;

fn too_long(max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("line longer than {max} bytes"),
    )
}

/// Appends one line, including its terminating LF, to `out`. Returns the
/// number of bytes appended (0 at end of stream). Fails if the line is
/// longer than `max` bytes, so a server that never sends a newline cannot
/// make us buffer without bound.
pub fn read_line_into<R: BufRead + ?Sized>(
    r: &mut R,
    out: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    let start = out.len();
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(out.len() - start);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        if out.len() - start + chunk.len() > max {
            return Err(too_long(max));
        }
        out.extend_from_slice(chunk);
        let used = chunk.len();
        r.consume(used);
        if done {
            return Ok(out.len() - start);
        }
    }
}

/// Reads one reply line and returns it without its CRLF. End of stream is
/// an `UnexpectedEof` error: a server never just stops talking mid-dialogue.
pub fn read_reply<R: BufRead + ?Sized>(r: &mut R) -> io::Result<String> {
    let mut buf = Vec::new();
    if read_line_into(r, &mut buf, MAX_REPLY_LINE)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by server",
        ));
    }
    trim_eol(&mut buf);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn trim_eol(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
}

/// Reads a dot-terminated multi-line block into `out`, undoing dot-stuffing
/// and turning CRLF into LF. At most `max` bytes are accepted; a longer
/// block is an error (the caller chooses the bound, e.g. from the size the
/// server announced).
pub fn read_dot_block<R: BufRead + ?Sized>(
    r: &mut R,
    out: &mut Vec<u8>,
    max: usize,
) -> io::Result<()> {
    let start = out.len();
    loop {
        let line_start = out.len();
        let budget = max.saturating_sub(line_start - start) + 3;
        let n = read_line_into(r, out, budget).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("multi-line reply longer than {max} bytes"),
                )
            } else {
                e
            }
        })?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a multi-line reply",
            ));
        }
        let line = &out[line_start..];
        let content_len = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .map_or(line.len(), |c| c.len());
        if content_len == 1 && line[0] == b'.' {
            out.truncate(line_start);
            return Ok(());
        }
        let ended = line.ends_with(b"\n");
        out.truncate(line_start + content_len);
        if out.get(line_start) == Some(&b'.') {
            out.remove(line_start);
        }
        if ended {
            out.push(b'\n');
        }
        if out.len() - start > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("multi-line reply longer than {max} bytes"),
            ));
        }
    }
}

/// Writes `data` (LF line endings) as a dot-stuffed CRLF block ending in
/// `.\r\n`, adding a final line break if the data lacks one.
pub fn write_dot_block<W: Write + ?Sized>(w: &mut W, data: &[u8]) -> io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            w.write_all(b".")?;
        }
        w.write_all(line)?;
        w.write_all(b"\r\n")?;
        rest = next;
    }
    w.write_all(b".\r\n")
}

/// A scripted peer for the protocol clients' unit tests and the fuzz
/// targets: reads play back what the server says, writes are recorded.
#[derive(Debug)]
pub struct Script {
    input: std::io::Cursor<Vec<u8>>,
    /// Everything the client wrote.
    pub written: Vec<u8>,
}

impl Script {
    /// A peer that will say `server_says`, then reach end of stream.
    pub fn new(server_says: impl AsRef<[u8]>) -> Script {
        Script {
            input: std::io::Cursor::new(server_says.as_ref().to_vec()),
            written: Vec::new(),
        }
    }
}

impl std::io::Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn reads_lines_and_refuses_endless_ones() {
        let mut r = Cursor::new(b"+OK hi\r\nnext".to_vec());
        assert_eq!(read_reply(&mut r).unwrap(), "+OK hi");
        assert_eq!(read_reply(&mut r).unwrap(), "next");
        assert!(read_reply(&mut r).is_err());
        let mut r = Cursor::new(vec![b'x'; MAX_REPLY_LINE + 10]);
        assert_eq!(
            read_reply(&mut r).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn dot_block_unstuffs_and_converts_to_lf() {
        let wire = b"From: a\r\n\r\n..leading\r\n...two\r\nFrom x\r\n.\r\n+OK next\r\n";
        let mut r = Cursor::new(wire.to_vec());
        let mut out = Vec::new();
        read_dot_block(&mut r, &mut out, 1000).unwrap();
        assert_eq!(out, b"From: a\n\n.leading\n..two\nFrom x\n");
        assert_eq!(read_reply(&mut r).unwrap(), "+OK next");
    }

    #[test]
    fn dot_block_is_bounded() {
        let mut wire = b"line\r\n".repeat(100);
        wire.extend_from_slice(b".\r\n");
        let mut out = Vec::new();
        let e = read_dot_block(&mut Cursor::new(wire.clone()), &mut out, 50).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let mut out = Vec::new();
        read_dot_block(&mut Cursor::new(wire), &mut out, 500).unwrap();
        assert_eq!(out.len(), 500);
    }

    #[test]
    fn dot_block_eof_is_an_error() {
        let mut out = Vec::new();
        let e = read_dot_block(&mut Cursor::new(b"abc\r\n".to_vec()), &mut out, 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn write_then_read_round_trips() {
        for data in [
            &b"a\n.\n..b\nFrom c\n"[..],
            b"no final newline",
            b"",
            b"\n\n",
            b"bare\rcr\n",
        ] {
            let mut wire = Vec::new();
            write_dot_block(&mut wire, data).unwrap();
            let mut back = Vec::new();
            read_dot_block(&mut Cursor::new(wire), &mut back, 1000).unwrap();
            let mut expected = data.to_vec();
            if !expected.is_empty() && !expected.ends_with(b"\n") {
                expected.push(b'\n');
            }
            assert_eq!(back, expected, "{:?}", String::from_utf8_lossy(data));
        }
    }
}
