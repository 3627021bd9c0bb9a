//! IMAP `COMPRESS=DEFLATE` (RFC 4978): raw DEFLATE (RFC 1951, no zlib
//! header) in both directions of a connection, switched on after the
//! tagged OK of `COMPRESS DEFLATE`.
//!
//! The `imap` crate owns the session's stream and the IMAP source reads
//! message bodies on a second handle of the same connection (see
//! `Stream::handle`): both read and write one byte stream, so both wrap
//! their handle in a `Deflate` sharing one `Switch`, which holds the one
//! compressor and decompressor of the connection. Before the switch is
//! flipped a `Deflate` passes bytes through untouched.
//!
//! Every write is compressed and sync-flushed at once (the server must
//! see each command whole). Reads inflate into the caller's buffer only,
//! from a fixed input buffer: a hostile server's decompression bomb costs
//! CPU, never memory (the callers bound how much they accept in all).
//! The layer sits below the transcript (`Traced`), which thus shows the
//! uncompressed dialogue, and above the connection's own reads, so the
//! session deadline (`net::paced`) measures the bytes on the wire.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Compressed bytes read from the connection at a time.
const INPUT_BUF: usize = 16 * 1024;

/// The shared compression state of one connection (cheap to clone).
#[derive(Clone, Default)]
pub struct Switch(Arc<Mutex<State>>);

/// What a `Switch` holds.
#[derive(Default)]
struct State {
    /// Set once compression is on.
    codec: Option<Box<Codec>>,
    /// While the answer to `COMPRESS DEFLATE` is awaited: reads hand out
    /// at most one line each, so nothing after the tagged OK (compressed
    /// already) reaches a reader above as plain bytes.
    lines: bool,
    /// Bytes read from the connection and not yet handed out (at most
    /// `INPUT_BUF`): the rest of a line, or what came after it, which
    /// `turn_on` gives to the decompressor.
    ahead: Vec<u8>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Switch(on: {})", self.is_on())
    }
}

impl Switch {
    /// A switch that is off.
    pub fn new() -> Switch {
        Switch::default()
    }

    /// Call before sending `COMPRESS DEFLATE`: until `turn_on` or
    /// `cancel`, reads hand out a line at a time.
    pub fn expect(&self) {
        self.lock().lines = true;
    }

    /// Turns compression on for everything read and written from now on
    /// (call right after reading the tagged OK of `COMPRESS DEFLATE`,
    /// before writing anything). Bytes the server sent after the OK and
    /// already read are the first compressed input.
    pub fn turn_on(&self) {
        let mut state = self.lock();
        let mut codec = Codec::new();
        let ahead = std::mem::take(&mut state.ahead);
        codec.input[..ahead.len()].copy_from_slice(&ahead);
        codec.end = ahead.len();
        state.codec = Some(Box::new(codec));
        state.lines = false;
    }

    /// `COMPRESS DEFLATE` was refused: reads go on uncompressed.
    pub fn cancel(&self) {
        self.lock().lines = false;
    }

    /// Whether compression is on.
    pub fn is_on(&self) -> bool {
        self.lock().codec.is_some()
    }

    /// Bytes (compressed, uncompressed) read and written since compression
    /// was turned on: `((in_wire, in_plain), (out_plain, out_wire))`.
    pub fn totals(&self) -> Option<((u64, u64), (u64, u64))> {
        self.lock().codec.as_ref().map(|c| {
            (
                (c.inflate.total_in(), c.inflate.total_out()),
                (c.deflate.total_in(), c.deflate.total_out()),
            )
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The compressor, the decompressor and the compressed input not yet
/// inflated.
struct Codec {
    deflate: Compress,
    inflate: Decompress,
    input: Box<[u8]>,
    pos: usize,
    end: usize,
    /// The server ended its DEFLATE stream (RFC 4978 has no way back):
    /// reads give end-of-file.
    ended: bool,
    /// Compressed output being written.
    out: Vec<u8>,
}

impl Codec {
    fn new() -> Codec {
        Codec {
            deflate: Compress::new(Compression::default(), false),
            inflate: Decompress::new(false),
            input: vec![0; INPUT_BUF].into_boxed_slice(),
            pos: 0,
            end: 0,
            ended: false,
            out: Vec::new(),
        }
    }
}

/// One handle of a connection, compressed once its `Switch` is on.
#[derive(Debug)]
pub struct Deflate<S> {
    inner: S,
    switch: Switch,
}

impl<S> Deflate<S> {
    /// Wraps `inner`, one handle of the connection `switch` belongs to.
    pub fn new(inner: S, switch: Switch) -> Deflate<S> {
        Deflate { inner, switch }
    }

    /// The wrapped handle.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The connection's switch.
    pub fn switch(&self) -> &Switch {
        &self.switch
    }
}

fn corrupt(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad COMPRESS=DEFLATE data from the server: {e}"),
    )
}

impl Codec {
    /// Inflates into `buf`, reading more compressed input from `inner`
    /// as needed. Never returns `Ok(0)` for a non-empty `buf` except at
    /// the end of the connection (or of the server's stream).
    fn read_from(&mut self, inner: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.ended {
                return Ok(0);
            }
            let before_in = self.inflate.total_in();
            let before_out = self.inflate.total_out();
            let status = self
                .inflate
                .decompress(&self.input[self.pos..self.end], buf, FlushDecompress::None)
                .map_err(corrupt)?;
            let consumed = (self.inflate.total_in() - before_in) as usize;
            let produced = (self.inflate.total_out() - before_out) as usize;
            self.pos += consumed;
            self.ended = status == Status::StreamEnd;
            if produced > 0 {
                return Ok(produced);
            }
            if self.ended {
                return Ok(0);
            }
            if consumed > 0 && self.pos < self.end {
                continue;
            }
            // Everything given was taken in (or nothing could be): more
            // compressed input is needed.
            if self.pos > 0 {
                self.input.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            }
            if self.end == self.input.len() {
                return Err(corrupt("the decompressor made no progress"));
            }
            let n = inner.read(&mut self.input[self.end..])?;
            if n == 0 {
                return Ok(0);
            }
            self.end += n;
        }
    }
}

impl<S: Read> Read for Deflate<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut guard = self.switch.lock();
        let state = &mut *guard;
        if let Some(codec) = state.codec.as_mut() {
            return codec.read_from(&mut self.inner, buf);
        }
        if state.ahead.is_empty() && !state.lines {
            drop(guard);
            return self.inner.read(buf);
        }
        loop {
            let line_end = state.ahead.iter().position(|&b| b == b'\n');
            let ready = match line_end {
                Some(i) => i + 1,
                // A line too long to hold is handed out as it is.
                None if state.ahead.len() >= INPUT_BUF || !state.lines => state.ahead.len(),
                None => 0,
            };
            if ready > 0 {
                let n = if state.lines {
                    ready
                } else {
                    state.ahead.len()
                }
                .min(buf.len());
                buf[..n].copy_from_slice(&state.ahead[..n]);
                state.ahead.drain(..n);
                return Ok(n);
            }
            let mut chunk = vec![0u8; INPUT_BUF - state.ahead.len()];
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                let n = state.ahead.len().min(buf.len());
                buf[..n].copy_from_slice(&state.ahead[..n]);
                state.ahead.drain(..n);
                return Ok(n);
            }
            state.ahead.extend_from_slice(&chunk[..n]);
        }
    }
}

impl<S: Write> Write for Deflate<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut guard = self.switch.lock();
        let Some(codec) = guard.codec.as_mut() else {
            drop(guard);
            return self.inner.write(buf);
        };
        codec.out.clear();
        compress_all(&mut codec.deflate, buf, &mut codec.out)?;
        self.inner.write_all(&codec.out)?;
        self.inner.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Compresses all of `input` into `out`, ending with a sync flush (so
/// the other side can inflate everything written so far).
pub fn compress_all(deflate: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let start = deflate.total_in();
    loop {
        let done = (deflate.total_in() - start) as usize;
        out.reserve((input.len() - done) / 2 + 1024);
        let room = out.capacity() - out.len();
        let before = out.len();
        deflate
            .compress_vec(&input[done..], out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        let all_in = (deflate.total_in() - start) as usize == input.len();
        // Done once everything is in and the flush had room to spare (a
        // full buffer may mean more flush output is waiting).
        if all_in && out.len() - before < room {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection's two ends in memory: what the client wrote, and what
    /// the server (a zlib raw deflater) sends.
    struct Pipe {
        sent: Vec<u8>,
        incoming: io::Cursor<Vec<u8>>,
        /// Most bytes handed out per read (to split input anywhere).
        chunk: usize,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.chunk);
            self.incoming.read(&mut buf[..n])
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn server_deflate(parts: &[&[u8]]) -> Vec<u8> {
        let mut c = Compress::new(Compression::best(), false);
        let mut out = Vec::new();
        for p in parts {
            compress_all(&mut c, p, &mut out).unwrap();
        }
        out
    }

    fn inflate_all(data: &[u8]) -> Vec<u8> {
        let mut d = Decompress::new(false);
        let mut out = Vec::with_capacity(data.len() * 50 + 1024);
        d.decompress_vec(data, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn passes_through_until_switched_on_then_compresses_both_ways() {
        let body: Vec<u8> = (0..200_000u32)
            .map(|i| b"abcdefgh\r\n"[(i % 10) as usize])
            .collect();
        let wire = server_deflate(&[b"* OK hello\r\n", &body]);
        let mut incoming = b"a1 OK Begin compression\r\n".to_vec();
        incoming.extend_from_slice(&wire);
        for chunk in [1, 7, 4096, 1 << 20] {
            let switch = Switch::new();
            let mut d = Deflate::new(
                Pipe {
                    sent: Vec::new(),
                    incoming: io::Cursor::new(incoming.clone()),
                    chunk,
                },
                switch.clone(),
            );
            d.write_all(b"a1 COMPRESS DEFLATE\r\n").unwrap();
            let mut first = [0u8; 25];
            d.read_exact(&mut first).unwrap();
            assert_eq!(&first, b"a1 OK Begin compression\r\n");
            switch.turn_on();
            d.write_all(b"a2 NOOP\r\n").unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 333];
            loop {
                let n = d.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let mut want = b"* OK hello\r\n".to_vec();
            want.extend_from_slice(&body);
            assert_eq!(got, want, "chunk {chunk}");
            let sent = &d.inner.sent;
            assert!(sent.starts_with(b"a1 COMPRESS DEFLATE\r\n"));
            let after = &sent[b"a1 COMPRESS DEFLATE\r\n".len()..];
            assert_eq!(inflate_all(after), b"a2 NOOP\r\n");
            let ((wire_in, plain_in), _) = switch.totals().unwrap();
            assert_eq!(plain_in, want.len() as u64);
            assert!(wire_in * 20 < plain_in, "{wire_in} {plain_in}");
        }
    }

    #[test]
    fn compressed_bytes_right_behind_the_ok_are_not_read_as_plain() {
        let mut incoming = b"* OK [CAPABILITY X] hi\r\na1 OK go\r\n".to_vec();
        incoming.extend_from_slice(&server_deflate(&[b"* 1 EXISTS\r\n"]));
        for (refused, chunk) in [(false, 1 << 20), (false, 3), (true, 1 << 20)] {
            let switch = Switch::new();
            let mut d = Deflate::new(
                Pipe {
                    sent: Vec::new(),
                    incoming: io::Cursor::new(if refused {
                        b"a1 NO not now\r\n* 2 EXISTS\r\n".to_vec()
                    } else {
                        incoming.clone()
                    }),
                    chunk,
                },
                switch.clone(),
            );
            switch.expect();
            let mut buf = [0u8; 4096];
            let mut lines = Vec::new();
            while !lines.ends_with(b"go\r\n") && !lines.ends_with(b"now\r\n") {
                let n = d.read(&mut buf).unwrap();
                assert!(n > 0);
                lines.extend_from_slice(&buf[..n]);
            }
            if refused {
                switch.cancel();
            } else {
                switch.turn_on();
            }
            let mut rest = Vec::new();
            d.read_to_end(&mut rest).unwrap();
            let want: &[u8] = if refused {
                b"* 2 EXISTS\r\n"
            } else {
                b"* 1 EXISTS\r\n"
            };
            assert_eq!(rest, want, "refused {refused}, chunk {chunk}");
        }
    }

    #[test]
    fn every_write_is_flushed_for_the_server() {
        let switch = Switch::new();
        switch.turn_on();
        let mut d = Deflate::new(
            Pipe {
                sent: Vec::new(),
                incoming: io::Cursor::new(Vec::new()),
                chunk: 1,
            },
            switch,
        );
        let mut d2 = Decompress::new(false);
        let mut seen = Vec::new();
        for cmd in [
            &b"a1 NOOP\r\n"[..],
            b"a2 SELECT INBOX\r\n",
            &[b'x'; 100_000],
        ] {
            let from = d.inner.sent.len();
            d.write_all(cmd).unwrap();
            let mut out = Vec::with_capacity(200_000);
            d2.decompress_vec(&d.inner.sent[from..], &mut out, FlushDecompress::None)
                .unwrap();
            assert_eq!(out, cmd, "each write inflates whole on its own");
            seen.extend_from_slice(&out);
        }
    }

    #[test]
    fn a_bomb_inflates_into_the_callers_buffer_only() {
        // 64 MiB of zeros in ~64 KiB: read in 1 KiB pieces, nothing grows.
        let zeros = vec![0u8; 64 << 20];
        let wire = server_deflate(&[&zeros]);
        assert!(wire.len() < 200_000);
        let switch = Switch::new();
        switch.turn_on();
        let mut d = Deflate::new(
            Pipe {
                sent: Vec::new(),
                incoming: io::Cursor::new(wire),
                chunk: 1 << 20,
            },
            switch.clone(),
        );
        let mut buf = [1u8; 1024];
        let n = d.read(&mut buf).unwrap();
        assert!(n <= 1024 && n > 0);
        assert!(buf[..n].iter().all(|&b| b == 0));
        let ((_, plain), _) = switch.totals().unwrap();
        assert!(plain <= 1024, "{plain}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let switch = Switch::new();
        switch.turn_on();
        let mut d = Deflate::new(
            Pipe {
                sent: Vec::new(),
                incoming: io::Cursor::new(vec![0xff; 100]),
                chunk: 10,
            },
            switch,
        );
        let mut buf = [0u8; 100];
        let e = d.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
