#!/usr/bin/env bash
# The cost of taking accounts from MariaDB instead of TOML: the same N
# accounts (default 1,000) once as [[account]] tables and once as rows of
# a MariaDB table read through [[accounts_from]], each fetched in one run
# (POP3S against one local Dovecot, empty mailboxes, keep = true), timed
# with peak RSS by /usr/bin/time; `config check` (load and validate only,
# no mail server) is timed too.
#
#   bench/backends.sh [--accounts N] [--runs R] [--no-build] [--portbase P]
#
# Needs: dovecot-imapd dovecot-pop3d, mariadb-server mariadb-client, time,
# openssl. Works as root (mariadbd --user=root) and as an ordinary user.
set -euo pipefail
cd "$(dirname "$0")/.."

ACCOUNTS=1000 RUNS=3 BUILD=1 PORTBASE=21000
while [ $# -gt 0 ]; do
  case "$1" in
    --accounts) ACCOUNTS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --portbase) PORTBASE=$2; shift 2 ;;
    *) echo "usage: $0 [--accounts N] [--runs R] [--no-build] [--portbase P]" >&2; exit 2 ;;
  esac
done
[ "$BUILD" = 1 ] && cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/mailretr
[ -x "$BIN" ] || { echo "no $BIN; build it first" >&2; exit 1; }

WORK=$(mktemp -d /tmp/mailretr-bench-backends.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  bench/dovecot-down.sh "$WORK/dovecot" >/dev/null 2>&1 || true
  [ -f "$WORK/mariadb.pid" ] && kill "$(cat "$WORK/mariadb.pid")" 2>/dev/null || true
  sleep 1
  rm -rf "$WORK"
}
trap cleanup EXIT

bench/dovecot-up.sh "$WORK/dovecot" "$PORTBASE" >/dev/null
POP3S=$((PORTBASE + 995))
CA=$WORK/dovecot/etc/cert.pem

ROOT_ARG=()
[ "$(id -u)" = 0 ] && ROOT_ARG=(--user=root)
mariadb-install-db --no-defaults --auth-root-authentication-method=normal \
  --datadir="$WORK/mariadb" --skip-test-db "${ROOT_ARG[@]}" >/dev/null
DBPORT=$((PORTBASE + 3306))
mariadbd --no-defaults --datadir="$WORK/mariadb" --socket="$WORK/mysqld.sock" \
  --port="$DBPORT" --bind-address=127.0.0.1 --pid-file="$WORK/mariadb.pid" \
  --skip-log-bin --log-error="$WORK/mariadbd.log" "${ROOT_ARG[@]}" &
for _ in $(seq 100); do
  [ -S "$WORK/mysqld.sock" ] && break
  sleep 0.2
done
SQL() { mariadb --no-defaults --socket="$WORK/mysqld.sock" -uroot "$@"; }
SQL -e "CREATE USER 'mailretr'@'%' IDENTIFIED BY 'bench-db-pw';
        GRANT ALL ON *.* TO 'mailretr'@'%'; CREATE DATABASE mail;
        CREATE TABLE mail.mailbox (name VARCHAR(64) PRIMARY KEY, user VARCHAR(64),
                                   password VARCHAR(64), active INT);"
{
  for i in $(seq "$ACCOUNTS"); do
    echo "INSERT INTO mailbox VALUES ('box$i', 'user$(( (i - 1) % 4 + 1 ))', 'secret', 1);"
  done
} | SQL mail

GENERAL="[general]
jobs = 16
hostname = \"bench.example\"

[destination.home]
type = \"maildir\"
path = \"$WORK/Maildir\"
"
{
  echo "$GENERAL"
  for i in $(seq "$ACCOUNTS"); do
    cat <<ACC
[[account]]
name = "box$i"
protocol = "pop3"
host = "localhost"
port = $POP3S
ca_file = "$CA"
user = "user$(( (i - 1) % 4 + 1 ))"
password = "secret"
keep = true
deliver_to = ["home"]

ACC
  done
} > "$WORK/toml.toml"
sed -i "s|^jobs = 16|jobs = 16\nstate_dir = \"$WORK/state-toml\"|" "$WORK/toml.toml"
{
  echo "$GENERAL" | sed "s|^jobs = 16|jobs = 16\nstate_dir = \"$WORK/state-sql\"|"
  cat <<SRC
[[accounts_from]]
type = "sql"
url = "mysql://mailretr@127.0.0.1:$DBPORT/mail"
password = "bench-db-pw"
query = "SELECT name, user, password FROM mailbox WHERE active = 1"
defaults = { protocol = "pop3", host = "localhost", port = $POP3S, ca_file = "$CA", keep = true, deliver_to = ["home"] }
SRC
} > "$WORK/sql.toml"
chmod 600 "$WORK"/*.toml

measure() { # label, args...
  local label=$1; shift
  local times=() rss=()
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$BIN" "$@" >/dev/null 2>"$WORK/err" || {
      code=$?
      # 1 = no new mail, the expected outcome here.
      [ "$code" = 1 ] || { echo "$label: exit $code"; head -5 "$WORK/err"; exit 1; }
    }
    read -r t m < <(tail -1 "$WORK/time")
    times+=("$t"); rss+=("$m")
  done
  local mt mr
  mt=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
  mr=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
  printf '%-28s %8ss %8s KB   (runs: %s)\n' "$label" "$mt" "$mr" "${times[*]}"
}

echo "$ACCOUNTS accounts, POP3S to one local Dovecot, empty mailboxes, jobs 16, median of $RUNS"
measure "config check, TOML" -c "$WORK/toml.toml" config check
measure "config check, MariaDB" -c "$WORK/sql.toml" config check
measure "fetch, TOML" -c "$WORK/toml.toml" fetch
measure "fetch, MariaDB" -c "$WORK/sql.toml" fetch
[ "$("$BIN" -c "$WORK/sql.toml" config check | grep -c '^account ')" = "$ACCOUNTS" ] || { echo "MariaDB config lists the wrong number of accounts" >&2; exit 1; }
