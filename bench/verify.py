#!/usr/bin/env python3
"""Check that a retriever delivered a corpus intact into a Maildir.

    bench/verify.py CORPUS_MAILDIR DEST_MAILDIR [--expect N] [--quick]

For every message in DEST_MAILDIR/{new,cur} the Message-ID is looked up in the
corpus and compared:
  * the body (everything after the first empty line) must be byte-identical;
  * every header line of the original must still be present (retrievers may
    add headers such as Received:/Delivered-To:/X-Envelope-*, never drop or
    rewrite one).
CRLF-stored messages are normalised to LF for the comparison, but reported.
--quick only counts files.  Exit status 0 when the count matches and
everything is intact; 1 when messages are missing, duplicated or unknown; 3 when the
count is right but some messages were altered.  stdout gets one line:
"<messages found> <messages altered>".
"""
import argparse
import hashlib
import os
import re
import sys

MID_RE = re.compile(rb"^message-id:[ \t]*(.*(?:\n[ \t].*)*)", re.I | re.M)


def maildir_files(md):
    out = []
    for sub in ("new", "cur"):
        d = os.path.join(md, sub)
        if os.path.isdir(d):
            out.extend(os.path.join(d, n) for n in os.listdir(d) if not n.startswith("."))
    return out


def split(data):
    i = data.find(b"\n\n")
    if i < 0:
        return data, b""
    return data[: i + 1], data[i + 2:]


def header_lines(head):
    # unfold: join continuation lines onto their field
    return re.sub(rb"\n[ \t]", b" ", head).splitlines()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("dest")
    ap.add_argument("--expect", type=int)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()

    got = maildir_files(a.dest)
    src = maildir_files(a.corpus)
    expect = a.expect if a.expect is not None else len(src)
    problems = []
    if len(got) != expect:
        problems.append("expected %d messages in %s, found %d" % (expect, a.dest, len(got)))
    if a.quick:
        for p in problems:
            print("verify: " + p, file=sys.stderr)
        print(len(got), 0)
        return 1 if problems else 0

    index = {}
    for p in src:
        with open(p, "rb") as f:
            head, body = split(f.read())
        m = MID_RE.search(head)
        index[m.group(1).strip()] = (hashlib.sha256(body).digest(), header_lines(head))

    seen = set()
    crlf = 0
    bad_body = []
    bad_head = []
    unknown = []
    dups = []
    for p in got:
        with open(p, "rb") as f:
            data = f.read()
        if b"\r\n" in data:
            crlf += 1
            data = data.replace(b"\r\n", b"\n")
        head, body = split(data)
        m = MID_RE.search(head)
        mid = m.group(1).strip() if m else None
        if mid not in index:
            unknown.append(p)
            continue
        if mid in seen:
            dups.append(p)
        seen.add(mid)
        digest, orig_lines = index[mid]
        if hashlib.sha256(body).digest() != digest:
            bad_body.append(p)
        have = set(header_lines(head))
        if any(ln not in have for ln in orig_lines):
            bad_head.append(p)

    missing = len(index) - len(seen)
    if missing and len(got) >= expect and expect == len(src):
        problems.append("%d corpus messages missing" % missing)
    for label, lst in (("unknown Message-ID", unknown), ("duplicate", dups)):
        if lst:
            problems.append("%d messages: %s (e.g. %s)" % (len(lst), label, lst[0]))
    altered = set(bad_body) | set(bad_head)
    notes = []
    for label, lst in (("body differs", bad_body), ("original header changed/dropped", bad_head)):
        if lst:
            notes.append("%d messages: %s (e.g. %s)" % (len(lst), label, lst[0]))
    if crlf:
        notes.append("%d messages stored with CRLF line endings" % crlf)
    for p in problems:
        print("verify: " + p, file=sys.stderr)
    for p in notes:
        print("verify: note: " + p, file=sys.stderr)
    print(len(got), len(altered))
    if problems:
        return 1
    return 3 if altered else 0


if __name__ == "__main__":
    sys.exit(main())
