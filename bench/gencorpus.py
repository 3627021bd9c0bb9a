#!/usr/bin/env python3
"""Generate a deterministic, realistic mail corpus directly into a Maildir.

    bench/gencorpus.py MAILDIR N [--seed S] [--profile mixed|small]

Writes N RFC 5322 messages (LF line endings, as Maildir stores them) into
MAILDIR/new, creating MAILDIR/{cur,new,tmp} if needed.  The same N and seed
always give byte-identical files with identical names and mtimes.

Size mix of the "mixed" profile (default; ~2,000 messages is ~100 MB):
    55%  0.4 -  4 KB   plain text (some quoted-printable UTF-8)
    35%    4 - 60 KB   multipart/alternative text+HTML, or text + small attachment
     9%   60 - 600 KB  multipart/mixed with a base64 attachment
     1%  0.6 -  2 MB   multipart/mixed with a big base64 attachment
The "small" profile makes every message 0.4-4 KB (used for the large
"no new mail" mailboxes, where message size does not matter).

Text bodies contain the awkward lines a retriever must get right: lines that
are a single ".", lines starting with "." or "..", lines starting with
"From " and ">From ", and trailing whitespace.

File names carry Dovecot's ,S=<size> and ,W=<size with CRLF> so the server
does not need to read every file to answer LIST / RFC822.SIZE.
"""
import argparse
import base64
import hashlib
import os
import random
import sys

EPOCH = 1700000000  # fixed base timestamp -> reproducible Date headers and mtimes

WORDS = (
    "the a of to and in is for on that with as this be by are from at or it "
    "server mail queue retry delivery account folder message header body fetch "
    "spool bandwidth link budget meeting report invoice quarter release build "
    "deploy ticket review patch schedule customer contract draft agenda minutes "
    "travel expense holiday lunch office network outage backup restore migrate "
    "database index latency throughput cache config rollout incident summary "
    "please thanks regards attached below above question answer update status"
).split()

SENDERS = [
    "Alice Example <alice@example.org>",
    "Bob Builder <bob@example.net>",
    "=?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <juergen@example.de>",
    "carol@example.com",
    '"Dave, Q." <dave@example.co.za>',
    "Eve Operations <ops-alerts@monitoring.example.io>",
    "=?ISO-8859-1?Q?Fran=E7oise_Dupont?= <f.dupont@example.fr>",
    "GitLab <gitlab@git.example.org>",
    "newsletter@lists.example.com",
]
LISTS = ["dev.lists.example.org", "announce.example.com", "ops.example.io"]
RELAYS = ["mx1.example.org", "mx2.example.org", "relay.example.net", "smtp-out.example.com", "mail.example.test"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

# Lines every retriever must transport unchanged (POP3/SMTP dot-stuffing,
# mbox From-quoting, whitespace preservation).
TRICKY = [
    ".",
    "..",
    ".leading dot line",
    "..two leading dots",
    "... and three",
    "From the start of a line, like an mbox separator",
    "From nobody Thu Jan  1 00:00:00 1970",
    ">From already quoted",
    "trailing spaces   ",
    "\ttab-indented line",
    "",
]


def rfc2822_date(ts):
    # time.gmtime is deterministic, but do it by hand to avoid locale surprises.
    import time
    t = time.gmtime(ts)
    return "%s, %02d %s %04d %02d:%02d:%02d +0000" % (
        DAYS[t.tm_wday], t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)


class Gen:
    def __init__(self, seed, profile):
        self.r = random.Random(seed)
        self.seed = seed
        self.profile = profile
        # A pool of pre-made prose lines keeps generation fast for big bodies.
        self.lines = [self._line() for _ in range(4000)]

    def _line(self):
        r = self.r
        n = r.randint(6, 13)
        s = " ".join(r.choice(WORDS) for _ in range(n))
        return s[0].upper() + s[1:] + r.choice([".", ".", ",", "?", ":", ""])

    def prose(self, nbytes, tricky=False):
        r = self.r
        out, size = [], 0
        while size < nbytes:
            if tricky and r.random() < 0.04:
                ln = r.choice(TRICKY)
            elif r.random() < 0.08:
                ln = ""  # paragraph break
            elif r.random() < 0.05:
                ln = "> " + r.choice(self.lines)  # quoted reply
            else:
                ln = r.choice(self.lines)
            out.append(ln)
            size += len(ln) + 1
        return "\n".join(out) + "\n"

    def size(self):
        r = self.r
        if self.profile == "small":
            return r.randint(400, 4000)
        x = r.random()
        if x < 0.55:
            return r.randint(400, 4000)
        if x < 0.90:
            return r.randint(4000, 60000)
        if x < 0.99:
            return r.randint(60000, 600000)
        return r.randint(600000, 2000000)

    def headers(self, i, ts, target):
        r = self.r
        date = rfc2822_date(ts)
        frm = r.choice(SENDERS)
        to = "user1@example.test"
        mid = "<%d.%s@gen.example>" % (i, hashlib.sha1(("%d/%d" % (self.seed, i)).encode()).hexdigest()[:16])
        h = []
        h.append("Return-Path: <bounce-%d@example.org>" % i)
        h.append("Delivered-To: %s" % to)
        for hop in range(1 if target < 2000 else r.randint(1, 3)):
            relay = r.choice(RELAYS)
            h.append("Received: from %s (%s [192.0.2.%d])\n\tby mail.example.test (Postfix) with ESMTPS id %08X\n\tfor <%s>; %s"
                     % (relay, relay, r.randint(1, 254), r.getrandbits(32), to, rfc2822_date(ts - 3 * hop)))
        if target >= 2000 and r.random() < 0.5:
            h.append("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1;\n\th=from:to:subject:date:message-id; bh=%s;\n\tb=%s"
                     % (base64.b64encode(r.randbytes(32)).decode(), base64.b64encode(r.randbytes(96)).decode()))
        h.append("From: %s" % frm)
        h.append("To: %s" % to)
        if r.random() < 0.3:
            h.append("Cc: Team <team@example.test>, someone@example.net")
        subj = " ".join(r.choice(WORDS) for _ in range(r.randint(3, 9)))
        if r.random() < 0.2:
            subj = "Re: " + subj
        h.append("Subject: [%d] %s" % (i, subj))
        h.append("Date: %s" % date)
        h.append("Message-ID: %s" % mid)
        if i > 0 and r.random() < 0.3:
            h.append("In-Reply-To: <%d.ref@gen.example>" % r.randint(0, i))
        if r.random() < 0.25:
            lst = r.choice(LISTS)
            h.append("List-Id: <%s>" % lst)
            h.append("List-Unsubscribe: <mailto:leave@%s>" % lst)
        h.append("MIME-Version: 1.0")
        return h

    def b64(self, nbytes):
        # nbytes of encoded output, wrapped at 76 columns like real MUAs do.
        raw = self.r.randbytes(max(3, nbytes * 3 // 4))
        return base64.encodebytes(raw).decode()  # '\n'-terminated 76-col lines

    def message(self, i):
        r = self.r
        target = self.size()
        ts = EPOCH + i * 97
        h = self.headers(i, ts, target)
        hdr_len = sum(len(x) + 1 for x in h) + 120
        room = max(200, target - hdr_len)
        if target < 4000 or self.profile == "small":
            if r.random() < 0.2:
                h.append("Content-Type: text/plain; charset=utf-8")
                h.append("Content-Transfer-Encoding: quoted-printable")
                body = self.prose(room - 40, tricky=True) + "Gr=C3=BC=C3=9Fe,\n=E2=80=94 sent from the bench\n"
            else:
                h.append("Content-Type: text/plain; charset=utf-8; format=flowed")
                h.append("Content-Transfer-Encoding: 8bit")
                body = self.prose(room, tricky=True)
        elif target < 60000:
            bnd = "=_alt_%016x" % r.getrandbits(64)
            if r.random() < 0.6:
                h.append('Content-Type: multipart/alternative; boundary="%s"' % bnd)
                text = self.prose(room // 2, tricky=True)
                html = "<html><body>\n" + "".join("<p>%s</p>\n" % ln for ln in self.prose(room // 2 - 60).split("\n") if ln) + "</body></html>\n"
                body = ("This is a multi-part message in MIME format.\n\n"
                        "--%s\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n%s\n"
                        "--%s\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n%s\n"
                        "--%s--\n") % (bnd, text, bnd, html, bnd)
            else:
                h.append('Content-Type: multipart/mixed; boundary="%s"' % bnd)
                text = self.prose(min(3000, room // 3), tricky=True)
                att = self.b64(room - len(text) - 300)
                body = ("--%s\nContent-Type: text/plain; charset=utf-8\n\n%s\n"
                        "--%s\nContent-Type: application/pdf; name=\"doc-%d.pdf\"\n"
                        "Content-Disposition: attachment; filename=\"doc-%d.pdf\"\n"
                        "Content-Transfer-Encoding: base64\n\n%s\n--%s--\n") % (bnd, text, bnd, i, i, att, bnd)
        else:
            bnd = "=_mix_%016x" % r.getrandbits(64)
            h.append('Content-Type: multipart/mixed; boundary="%s"' % bnd)
            text = self.prose(r.randint(500, 4000), tricky=True)
            att = self.b64(room - len(text) - 300)
            kind = r.choice([("image/jpeg", "photo-%d.jpg"), ("application/zip", "archive-%d.zip"),
                             ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "sheet-%d.xlsx")])
            name = kind[1] % i
            body = ("--%s\nContent-Type: text/plain; charset=utf-8\n\n%s\n"
                    "--%s\nContent-Type: %s; name=\"%s\"\nContent-Disposition: attachment; filename=\"%s\"\n"
                    "Content-Transfer-Encoding: base64\n\n%s\n--%s--\n") % (bnd, text, bnd, kind[0], name, name, att, bnd)
        return ("\n".join(h) + "\n\n" + body).encode("utf-8"), ts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("maildir")
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", choices=["mixed", "small"], default="mixed")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()

    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(a.maildir, d), exist_ok=True)
    g = Gen(a.seed, a.profile)
    total = 0
    for i in range(a.n):
        data, ts = g.message(i)
        total += len(data)
        vsize = len(data) + data.count(b"\n")  # size as seen on the wire (CRLF)
        name = "%d.M%06dP%d.bench,S=%d,W=%d" % (ts, i, a.seed, len(data), vsize)
        path = os.path.join(a.maildir, "new", name)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (ts, ts))
    if not a.quiet:
        print("%d messages, %d bytes (%.1f MB) into %s" % (a.n, total, total / 1e6, a.maildir))


if __name__ == "__main__":
    sys.exit(main())
