#!/usr/bin/env python3
"""Let Dovecot's Maildir index settle after a priming fetch, the same for
every tool, before the "no new mail" runs are timed.

    settle.py pop3|imap PORT CA_FILE MAILDIR USER PASSWORD

Why: when a session moves messages from new/ to cur/ (the priming fetch's
login does, for all 2,000), Dovecot cannot trust cur/'s mtime for the
next MAILDIR_SYNC_SECS (1 s, counted in whole seconds) and marks the
directory dirty; every later session that finds it dirty reads cur/ again
(for 2,000 messages about 4 ms more on STAT) and, while the mtime is still
that recent, marks it dirty again. A tool whose priming fetch takes 10 s
(fetchmail, mbsync) has its own last sync of that fetch clean the state;
one whose priming fetch takes 0.3 s (mailretr) leaves it dirty, and then
paid for it on the first *and* the second timed run (1.1 s apart), which
a cron job run minutes apart never sees twice. So: wait until cur/'s
mtime is past the window, open one neutral session (the one that reads
cur/ again and records it clean), and check with another that nothing is
written to the index any more; repeat if it is.

Prints the number of neutral sessions it took. Exits non-zero if the
index never settles.
"""

import os
import socket
import ssl
import sys
import time


def session(proto, port, ctx, user, password):
    with socket.create_connection(("localhost", port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            f = s.makefile("rb")

            def line():
                got = f.readline()
                if not got:
                    raise SystemExit("settle: the server closed the connection")
                return got

            line()  # greeting
            if proto == "pop3":
                s.sendall(f"USER {user}\r\nPASS {password}\r\nSTAT\r\nQUIT\r\n".encode())
                for _ in range(4):
                    if not line().startswith(b"+OK"):
                        raise SystemExit("settle: the POP3 server refused the session")
            else:
                s.sendall(f"a LOGIN {user} {password}\r\nb SELECT INBOX\r\nc LOGOUT\r\n".encode())
                while not line().startswith(b"c "):
                    pass


def index_state(maildir):
    st = os.stat(os.path.join(maildir, "dovecot.index.log"))
    return (st.st_size, st.st_mtime_ns)


def main():
    proto, port, ca, maildir, user, password = sys.argv[1:7]
    ctx = ssl.create_default_context(cafile=ca)
    for n in range(1, 6):
        # Past cur/'s window in whole seconds: a session sooner would skip
        # the sync (the state is dirty, too recent to read again) and so
        # look settled without being so.
        time.sleep(2.1)
        session(proto, int(port), ctx, user, password)
        before = index_state(maildir)
        time.sleep(2.1)
        session(proto, int(port), ctx, user, password)
        if index_state(maildir) == before:
            print(2 * n)
            return
    sys.exit("settle: Dovecot still rewrites the Maildir index after 10 sessions")


if __name__ == "__main__":
    main()
