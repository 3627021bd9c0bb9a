//! What every program mailretr runs (an `mda` destination, a
//! `filter_command`, a `password_command`) shares: it runs in a process
//! group of its own, which a timeout kills whole, and its output is read
//! on a thread with a bound on what is kept.

use std::io::Read;

/// SIGKILL to the process group `pid` leads (a child spawned with
/// `process_group(0)`, not reaped yet, so the id is still ours): its
/// children go too, and with them what holds its pipes open.
pub fn kill_group(pid: i32) {
    // SAFETY: kill(2) on the process group we created.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

/// Reads `from` to its end, keeping at most `limit` bytes (the first ones,
/// or with `tail` the last ones), and whether there was more.
pub fn read_bounded(mut from: impl Read, limit: usize, tail: bool) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut more = false;
    let mut chunk = [0u8; 8192];
    while let Ok(n) = from.read(&mut chunk) {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..n]);
        if kept.len() > limit {
            more = true;
            if tail {
                kept.drain(..kept.len() - limit);
            } else {
                kept.truncate(limit);
            }
        }
    }
    (kept, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_head_or_the_tail_and_says_there_was_more() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let (head, more) = read_bounded(&data[..], 100, false);
        assert!(more);
        assert_eq!(head, &data[..100]);
        let (tail, more) = read_bounded(&data[..], 100, true);
        assert!(more);
        assert_eq!(tail, &data[data.len() - 100..]);
        assert_eq!(
            read_bounded(&data[..50], 100, true),
            (data[..50].to_vec(), false)
        );
    }
}
