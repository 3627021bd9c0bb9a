#!/usr/bin/env bash
# Runs mailretr's whole test suite on a fresh Debian machine.
#
# The integration tests start a real Dovecot (IMAP, POP3, LMTP) on loopback
# ports with a throwaway config, and a real SMTP server (aiosmtpd) and MDA
# (procmail), so those must be installed. When one is missing and this
# script runs as root, it installs the Debian packages;
# otherwise it stops with the command to run. Tests that need Dovecot never
# skip: without it they fail loudly. GNU Mailutils (a second, non-Dovecot
# IMAP and POP3 server) is unpacked privately under target/, see below.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(dovecot-imapd dovecot-pop3d dovecot-lmtpd openssl python3-aiosmtpd python3-cryptography procmail time
          mariadb-server mariadb-client postgresql postgresql-client slapd ldap-utils)
missing=()
command -v dovecot >/dev/null 2>&1 || missing+=(dovecot-imapd dovecot-pop3d dovecot-lmtpd)
for p in dovecot-imapd dovecot-pop3d dovecot-lmtpd; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# tests/destinations.rs: a real SMTP server and a real MDA.
dpkg -s python3-aiosmtpd >/dev/null 2>&1 || missing+=(python3-aiosmtpd)
# tests/it/oauth.rs: the test OAuth2 server verifies RS256 JWTs.
python3 -c "import cryptography" >/dev/null 2>&1 || missing+=(python3-cryptography)
command -v procmail >/dev/null 2>&1 || missing+=(procmail)
# tests/it/hostile.rs measures peak memory with GNU time.
[ -x /usr/bin/time ] || missing+=(time)
# tests/it/backends.rs: real MariaDB, PostgreSQL 15 and OpenLDAP servers.
for p in mariadb-server mariadb-client postgresql postgresql-client slapd ldap-utils; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
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

# tests/it/servers_real.rs runs a real GNU Mailutils imap4d and pop3d. The
# Debian packages conflict with Dovecot's, so they are not installed:
# `apt-get download` + `dpkg -x` into a private root under target/ (which
# needs no root), run from there by tests/support/mailutils.rs.
mailutils_root=target/test-servers/mailutils
mailutils_debs=(mailutils-imap4d mailutils-pop3d libmailutils9 libmu-dbm9 mailutils-common
  guile-3.0-libs libgsasl18 libmariadb3 libkyotocabinet16v5 libltdl7 libgssglue1 libidn12
  liblzo2-2 libntlm0 libpq5 libpython3.11 libwrap0)
if [ ! -x "$mailutils_root/root/usr/sbin/imap4d" ] || [ ! -x "$mailutils_root/root/usr/sbin/pop3d" ]; then
  echo "fetching GNU Mailutils into $mailutils_root (apt-get download + dpkg -x)" >&2
  rm -rf "$mailutils_root"
  mkdir -p "$mailutils_root/debs"
  if ! (cd "$mailutils_root/debs" && apt-get download -qq "${mailutils_debs[@]}"); then
    # A fresh machine may have no package lists yet.
    [ "$(id -u)" = 0 ] || { echo "apt-get download failed; as root, run apt-get update first" >&2; exit 1; }
    apt-get update -qq
    (cd "$mailutils_root/debs" && apt-get download -qq "${mailutils_debs[@]}")
  fi
  for deb in "$mailutils_root"/debs/*.deb; do dpkg -x "$deb" "$mailutils_root/root"; done
  rm -rf "$mailutils_root/debs"
fi
mu_libs=$(printf '%s:' "$PWD/$mailutils_root"/root/{usr/lib,lib}/*-linux-gnu)
if LD_LIBRARY_PATH="$mu_libs" ldd "$mailutils_root"/root/usr/sbin/{imap4d,pop3d} | grep -q 'not found'; then
  echo "GNU Mailutils in $mailutils_root lacks libraries (add their packages to mailutils_debs" \
    "in $0, then rm -rf $mailutils_root and run it again):" >&2
  LD_LIBRARY_PATH="$mu_libs" ldd "$mailutils_root"/root/usr/sbin/{imap4d,pop3d} | grep 'not found' | sort -u >&2
  exit 1
fi

cargo test --locked "$@"
