#!/usr/bin/env bash
# Runs mailretr's whole test suite on a fresh Debian machine.
#
# The integration tests start a real Dovecot (IMAP, POP3, LMTP) on loopback
# ports with a throwaway config, and a real SMTP server (aiosmtpd) and MDA
# (procmail), so those must be installed. When one is missing and this
# script runs as root, it installs the Debian packages;
# otherwise it stops with the command to run. Tests that need Dovecot never
# skip: without it they fail loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(dovecot-imapd dovecot-pop3d dovecot-lmtpd openssl python3-aiosmtpd procmail time)
missing=()
command -v dovecot >/dev/null 2>&1 || missing+=(dovecot-imapd dovecot-pop3d dovecot-lmtpd)
for p in dovecot-imapd dovecot-pop3d dovecot-lmtpd; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# tests/destinations.rs: a real SMTP server and a real MDA.
dpkg -s python3-aiosmtpd >/dev/null 2>&1 || missing+=(python3-aiosmtpd)
command -v procmail >/dev/null 2>&1 || missing+=(procmail)
# tests/it/hostile.rs measures peak memory with GNU time.
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${packages[*]} from Debian" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  else
    echo "missing for the tests: ${missing[*]}; run this as root, or: sudo apt-get install ${packages[*]}" >&2
    exit 1
  fi
fi

cargo test --locked "$@"
