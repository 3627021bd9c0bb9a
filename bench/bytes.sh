#!/usr/bin/env bash
# Bytes on the wire for one IMAPS mailbox, Dovecot offering COMPRESS=DEFLATE:
# mailretr (COMPRESS on, the default), mailretr with compress = false and
# mbsync (which uses COMPRESS when offered), each counted by a relay
# (countlink.py), against the mail's own size and its DEFLATE size (the
# physical limit: python zlib, level 9, raw DEFLATE, of the messages
# concatenated as the server sends them, CRLF).
#
#   bench/bytes.sh [--messages N] [--seed S] [--portbase B] [--no-build] [--keep-workdir]
#
# Keep mode for every tool (mbsync's Sync Pull cannot delete); each run
# starts from a pristine copy of the mailbox and an empty state.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
MAILRETR=${MAILRETR:-${CARGO_TARGET_DIR:-$REPO/target}/release/mailretr}
MESSAGES=300
SEED=1
PORTBASE=21000
BUILD=1
KEEP_WORK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --messages) MESSAGES=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --portbase) PORTBASE=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep-workdir) KEEP_WORK=1; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
die() { echo "bytes.sh: $*" >&2; exit 1; }
command -v mbsync >/dev/null || die "mbsync is not installed (apt-get install isync)"
if [ "$BUILD" = 1 ]; then (cd "$REPO" && cargo build --release) || die "cargo build --release failed"; fi
[ -x "$MAILRETR" ] || die "$MAILRETR not found"

WORK=$(mktemp -d /tmp/mailretr-bytes.XXXXXX)
chmod 755 "$WORK"
DV=$WORK/dovecot
RELAY_PID=
cleanup() {
  [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null || true
  "$BENCH/dovecot-down.sh" "$DV" || true
  if [ "$KEEP_WORK" = 0 ]; then rm -rf "$WORK"; else echo "work dir kept: $WORK" >&2; fi
}
trap cleanup EXIT
DOVECOT_IMAP_ZLIB=1 "$BENCH/dovecot-up.sh" "$DV" "$PORTBASE" >/dev/null || die "could not start dovecot"
CERT=$DV/etc/cert.pem
IMAPS=$((PORTBASE + 993)); RELAY=$((PORTBASE + 1993))
MAILBOX=$DV/home/user1/Maildir
OWNER=; [ "$(id -u)" = 0 ] && OWNER=mail:mail
python3 "$BENCH/gencorpus.py" "$WORK/corpus" "$MESSAGES" --seed "$SEED" --quiet
LOG=$WORK/relay.log
python3 "$BENCH/countlink.py" "$RELAY" "$IMAPS" "$LOG" >"$WORK/relay.out" 2>&1 &
RELAY_PID=$!
for _ in $(seq 50); do grep -q listening "$WORK/relay.out" 2>/dev/null && break; sleep 0.1; done

# The mail's size (as sent: CRLF) and its DEFLATE size.
read -r MAIL DEFLATED < <(python3 - "$WORK/corpus" <<'PYEOF'
import os, sys, zlib
d = os.path.join(sys.argv[1], "new")
data = b"".join(open(os.path.join(d, f), "rb").read().replace(b"\n", b"\r\n") for f in sorted(os.listdir(d)))
c = zlib.compressobj(9, zlib.DEFLATED, -15)
print(len(data), len(c.compress(data) + c.flush()))
PYEOF
)

declare -A DOWN UP
run() { # NAME COMMAND...
  local name=$1; shift
  rm -rf "$MAILBOX"; cp -a "$WORK/corpus" "$MAILBOX"
  [ -n "$OWNER" ] && chown -R "$OWNER" "$MAILBOX"
  : > "$LOG"
  (cd "$R" && HOME=$R "$@") >"$R/out" 2>&1 || { cat "$R/out" >&2; die "$name failed"; }
  local got
  got=$(find "$R/Maildir/new" "$R/Maildir/cur" -type f | wc -l)
  [ "$got" = "$MESSAGES" ] || die "$name delivered $got of $MESSAGES messages"
  sleep 0.3   # the relay logs a connection once both directions ended
  DOWN[$name]=$(awk '{s+=$1} END{print s+0}' "$LOG")
  UP[$name]=$(awk '{s+=$2} END{print s+0}' "$LOG")
}
mailretr_config() { # DIR COMPRESS
  cat > "$1/mailretr.toml" <<EOF
[general]
state_dir = "$1/state"
hostname = "bench.local"

[[account]]
name = "bench"
protocol = "imap"
host = "localhost"
port = $RELAY
tls = "implicit"
ca_file = "$CERT"
user = "user1"
password = "secret"
keep = true
compress = $2
folders = ["INBOX"]
deliver_to = ["home"]

[destination.home]
type = "maildir"
path = "$1/Maildir"
EOF
  chmod 600 "$1/mailretr.toml"
}
for variant in compress:true nocompress:false; do
  R=$WORK/${variant%%:*}; mkdir -p "$R/Maildir"/{new,cur,tmp} "$R/state"
  mailretr_config "$R" "${variant#*:}"
  run "mailretr-${variant%%:*}" "$MAILRETR" --config "$R/mailretr.toml" fetch
done
R=$WORK/mbsync; mkdir -p "$R/Maildir"/{new,cur,tmp}
cat > "$R/mbsyncrc" <<EOF
IMAPAccount bench
Host localhost
Port $RELAY
User user1
Pass secret
SSLType IMAPS
CertificateFile $CERT

IMAPStore far
Account bench

MaildirStore near
Path $R/
Inbox $R/Maildir

Channel bench
Far :far:INBOX
Near :near:INBOX
Sync Pull
Create Near
Expunge None
SyncState *
EOF
run mbsync mbsync -c "$R/mbsyncrc" -q bench

echo "== bytes: $MESSAGES messages, IMAPS, Dovecot with COMPRESS=DEFLATE, keep mode"
python3 - "$MAIL" "$DEFLATED" "${DOWN[mailretr-compress]}" "${UP[mailretr-compress]}" \
  "${DOWN[mailretr-nocompress]}" "${UP[mailretr-nocompress]}" "${DOWN[mbsync]}" "${UP[mbsync]}" <<'PYEOF'
import sys
mail, deflated, *v = map(int, sys.argv[1:])
rows = [("mailretr (COMPRESS)", v[0], v[1]), ("mailretr compress=false", v[2], v[3]), ("mbsync", v[4], v[5])]
mb = v[4] + v[5]
print("%-26s %12s %12s %12s %9s %10s" % ("", "down B", "up B", "total B", "/mail", "/mbsync"))
print("%-26s %12d %12s %12d %9.3f %10.3f" % ("mail (CRLF)", mail, "", mail, 1.0, mail / mb))
print("%-26s %12d %12s %12d %9.3f %10.3f" % ("DEFLATE of the mail (zlib 9)", deflated, "", deflated, deflated / mail, deflated / mb))
for name, down, up in rows:
    t = down + up
    print("%-26s %12d %12d %12d %9.3f %10.3f" % (name, down, up, t, t / mail, t / mb))
PYEOF
