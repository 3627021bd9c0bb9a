#!/usr/bin/env bash
# mailretr benchmark: mailretr vs fetchmail / getmail6 / mbsync against a
# private Dovecot, on loopback and through a latency proxy.
#
#   bench/run.sh [options]
#
# Options:
#   --messages N          corpus size for the loopback scenarios (default 2000, ~100 MB)
#   --slow-messages N     corpus size for the high-latency scenarios (default 300)
#   --rtt-ms MS           round-trip time added by slowlink.py (default 40; 0 = skip those scenarios;
#                         also the "no new mail" scenarios are run at this RTT, see --nomail-rtt)
#   --peers LIST          comma list of peers: fetchmail,getmail,mbsync (default all; "none" = only mailretr)
#   --only pop3|imap|nomail   run only the POP3 scenarios, only the IMAP ones, or only "no new mail"
#   --nomail-messages N   mailbox size for the "no new mail" scenarios (default 2000; 0 = skip)
#   --nomail-peers LIST   peers for the "no new mail" scenarios (default: same as --peers)
#   --nomail-rtt 0|1      also time the "no new mail" run through the --rtt-ms link (default 1)
#   --steady K            "no new mail": steady-state runs timed after each priming fetch and
#                         its first run (default 3; all of them go into that scenario's median)
#   --login-mode secure|performance   Dovecot's login processes: one per connection
#                         (secure, Dovecot's default) or long-lived (performance,
#                         service_count = 0: TLS session tickets can be resumed)
#   --mode delete|keep    POP3 scenarios: delete on server after retrieval (default) or keep
#   --runs R              timed runs per tool and scenario; the median time is reported (default 1)
#   --seed S              corpus seed (default 1)
#   --portbase B          Dovecot port base (default 20000, see dovecot-up.sh)
#   --workdir DIR         where to put everything (default: a fresh mktemp dir under /tmp)
#   --keep-workdir        do not delete the work dir at the end (it is kept on failure anyway)
#   --no-mailretr         skip building and running mailretr (validate the peers only)
#   --no-build            do not run cargo; use the existing target/release/mailretr
#                         (under $CARGO_TARGET_DIR when that is set)
#   --mailretr PATH       time this mailretr binary (implies --no-build)
#   --out FILE            also write the raw results (TSV) to FILE
#
# Everything this script needs lives in bench/ next to it; the mailretr binary is
# built from the repository root (the parent of bench/).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
MAILRETR=${CARGO_TARGET_DIR:-$REPO/target}/release/mailretr

MESSAGES=2000
SLOW_MESSAGES=300
RTT_MS=40
PEERS=fetchmail,getmail,mbsync
ONLY=
NOMAIL_MESSAGES=2000
NOMAIL_PEERS=
NOMAIL_RTT=1
STEADY=3
LOGIN_MODE=secure
MODE=delete
RUNS=1
SEED=1
PORTBASE=20000
WORK=
KEEP_WORK=0
WITH_MAILRETR=1
BUILD=1
OUT=

die() { echo "run.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --messages) MESSAGES=$2; shift 2 ;;
    --slow-messages) SLOW_MESSAGES=$2; shift 2 ;;
    --rtt-ms) RTT_MS=$2; shift 2 ;;
    --peers) PEERS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --nomail-messages) NOMAIL_MESSAGES=$2; shift 2 ;;
    --nomail-peers) NOMAIL_PEERS=$2; shift 2 ;;
    --nomail-rtt) NOMAIL_RTT=$2; shift 2 ;;
    --steady) STEADY=$2; shift 2 ;;
    --login-mode) LOGIN_MODE=$2; shift 2 ;;
    --mailretr) MAILRETR=$2; BUILD=0; shift 2 ;;
    --mode) MODE=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --portbase) PORTBASE=$2; shift 2 ;;
    --workdir) WORK=$2; shift 2 ;;
    --keep-workdir) KEEP_WORK=1; shift ;;
    --no-mailretr) WITH_MAILRETR=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option: $1" >&2; usage 2 ;;
  esac
done
case "$ONLY" in ""|pop3|imap|nomail) ;; *) die "--only must be pop3, imap or nomail" ;; esac
case "$MODE" in delete|keep) ;; *) die "--mode must be delete or keep" ;; esac
case "$LOGIN_MODE" in secure|performance) ;; *) die "--login-mode must be secure or performance" ;; esac
case "$NOMAIL_RTT" in 0|1) ;; *) die "--nomail-rtt must be 0 or 1" ;; esac
[ "$PEERS" = none ] && PEERS=
[ -z "$NOMAIL_PEERS" ] && NOMAIL_PEERS=$PEERS
[ "$NOMAIL_PEERS" = none ] && NOMAIL_PEERS=
for n in "$MESSAGES" "$SLOW_MESSAGES" "$RTT_MS" "$NOMAIL_MESSAGES" "$RUNS" "$STEADY" "$SEED" "$PORTBASE"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "not a number: $n"
done
[ "$RUNS" -ge 1 ] || die "--runs must be >= 1"
[ "$STEADY" -ge 1 ] || die "--steady must be >= 1"

has_peer() { [[ ",$1," == *",$2,"* ]]; }
for p in ${PEERS//,/ } ${NOMAIL_PEERS//,/ }; do
  case "$p" in fetchmail|getmail|mbsync) ;; *) die "unknown peer: $p" ;; esac
done

# ---------------------------------------------------------------- prerequisites
command -v dovecot >/dev/null || die "dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d dovecot-lmtpd)"
command -v python3 >/dev/null || die "python3 is required"
command -v cc >/dev/null || die "a C compiler (cc) is required for bench/timed.c (apt-get install gcc)"
command -v openssl >/dev/null || die "openssl is required"
check_peer() {
  case "$1" in
    fetchmail) command -v fetchmail >/dev/null && command -v procmail >/dev/null ;;
    getmail) command -v getmail >/dev/null ;;
    mbsync) command -v mbsync >/dev/null ;;
  esac
}
filter_peers() {
  local out= p
  for p in ${1//,/ }; do
    if check_peer "$p"; then out=${out:+$out,}$p; else echo "run.sh: warning: $p not installed, skipping it" >&2; fi
  done
  echo "$out"
}
PEERS=$(filter_peers "$PEERS")
NOMAIL_PEERS=$(filter_peers "$NOMAIL_PEERS")

if [ "$WITH_MAILRETR" = 1 ]; then
  if [ "$BUILD" = 1 ]; then
    command -v cargo >/dev/null || die "cargo not found (or use --no-mailretr)"
    echo "== building mailretr (release) in $REPO"
    (cd "$REPO" && cargo build --release) || die "cargo build --release failed (use --no-mailretr to benchmark the peers only)"
  fi
  [ -x "$MAILRETR" ] || die "$MAILRETR not found"
fi

IS_ROOT=0; [ "$(id -u)" = 0 ] && IS_ROOT=1

# ---------------------------------------------------------------- work dir, server, proxies
if [ -z "$WORK" ]; then
  WORK=$(mktemp -d /tmp/mailretr-bench.XXXXXX)
else
  mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
fi
chmod 755 "$WORK"
TIMED=$WORK/timed
cc -O2 -o "$TIMED" "$BENCH/timed.c" || die "could not compile bench/timed.c"
DV=$WORK/dovecot
PROXY_PIDS=()
FAILED=1
cleanup() {
  local pid
  for pid in "${PROXY_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PROXY_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  "$BENCH/dovecot-down.sh" "$DV" || true
  if [ "$FAILED" = 0 ] && [ "$KEEP_WORK" = 0 ]; then
    rm -rf "$WORK"
  else
    echo "work dir kept: $WORK" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DOVECOT_LOGIN_MODE=$LOGIN_MODE "$BENCH/dovecot-up.sh" "$DV" "$PORTBASE" >/dev/null || die "could not start dovecot"
CERT=$DV/etc/cert.pem
POP3S_PORT=$((PORTBASE + 995)); IMAPS_PORT=$((PORTBASE + 993))
SLOW_POP3S_PORT=$((PORTBASE + 1995)); SLOW_IMAPS_PORT=$((PORTBASE + 1993))
MAILBOX=$DV/home/user1/Maildir
if [ "$IS_ROOT" = 1 ]; then MAIL_OWNER=mail:mail; else MAIL_OWNER=; fi
echo "== dovecot on 127.0.0.1 (pop3s $POP3S_PORT, imaps $IMAPS_PORT, login mode $LOGIN_MODE), work dir $WORK"

start_proxy() { # LISTEN TARGET
  local log=$WORK/slowlink-$1.log
  python3 "$BENCH/slowlink.py" "$1" "$2" --rtt-ms "$RTT_MS" >"$log" 2>&1 &
  PROXY_PIDS+=($!)
  for _ in $(seq 50); do
    grep -q listening "$log" 2>/dev/null && return 0
    sleep 0.1
  done
  die "slowlink on port $1 did not start: $(cat "$log")"
}

# ---------------------------------------------------------------- corpora
declare -A CORPUS_MB
make_corpus() { # NAME N PROFILE
  local dir=$WORK/corpus-$1
  if [ ! -d "$dir" ]; then
    python3 "$BENCH/gencorpus.py" "$dir" "$2" --seed "$SEED" --profile "$3" --quiet
  fi
  CORPUS_MB[$1]=$(du -sm --apparent-size "$dir" | cut -f1)
}

# Put a pristine copy of corpus NAME into user1's mailbox (indexes and all
# previous state removed).
restore_mailbox() {
  rm -rf "$MAILBOX"
  cp -a "$WORK/corpus-$1" "$MAILBOX"
  [ -n "$MAIL_OWNER" ] && chown -R "$MAIL_OWNER" "$MAILBOX"
  # Start every timed run with nothing of the harness's own still being
  # written back (this copy, the previous run's Maildir): otherwise the
  # tool timed next pays for it.
  sync
  return 0
}
server_count() {
  find "$MAILBOX/new" "$MAILBOX/cur" -type f 2>/dev/null | wc -l
}

# ---------------------------------------------------------------- per-tool setup
# Each writes its config into $R (the run dir) and sets CMD (array).
# Destination is always $R/Maildir (created empty beforehand).
# Args: PROTO(pop3|imap) PORT KEEP(0|1)

setup_mailretr() {
  local proto=$1 port=$2 keep=$3 kv=false
  [ "$keep" = 1 ] && kv=true
  mkdir -p "$R/state"
  {
    echo "[general]"
    echo "state_dir = \"$R/state\""
    echo "hostname = \"bench.local\""
    echo
    echo "[[account]]"
    echo "name = \"bench\""
    echo "protocol = \"$proto\""
    echo "host = \"localhost\""
    echo "port = $port"
    echo "tls = \"implicit\""
    echo "ca_file = \"$CERT\""
    echo "user = \"user1\""
    echo "password = \"secret\""
    echo "keep = $kv"
    [ "$proto" = imap ] && echo 'folders = ["INBOX"]'
    echo 'deliver_to = ["home"]'
    echo
    echo "[destination.home]"
    echo "type = \"maildir\""
    echo "path = \"$R/Maildir\""
  } > "$R/mailretr.toml"
  chmod 600 "$R/mailretr.toml"
  CMD=("$MAILRETR" --config "$R/mailretr.toml" fetch)
}

setup_fetchmail() { # POP3 only
  local port=$2 keep=$3
  cat > "$R/procmailrc" <<EOF
# trailing slash: deliver into a Maildir
DEFAULT=$R/Maildir/
VERBOSE=no
EOF
  {
    echo "set no bouncemail"
    echo "set no syslog"
    # "uidl" (a server option) makes fetchmail track seen messages in the idfile
    if [ "${NOMAIL_RUN:-0}" = 1 ]; then
      echo "poll localhost protocol pop3 port $port uidl"
    else
      echo "poll localhost protocol pop3 port $port"
    fi
    echo "  user user1 password secret"
    echo "  ssl sslcertck sslcertfile $CERT"
    echo "  no rewrite"
    if [ "$keep" = 1 ] && [ "${NOMAIL_RUN:-0}" = 1 ]; then
      echo "  keep"
    elif [ "$keep" = 1 ]; then
      echo "  keep fetchall"
    else
      echo "  fetchall"
    fi
    echo "  mda \"/usr/bin/procmail -m $R/procmailrc\""
  } > "$R/fetchmailrc"
  chmod 600 "$R/fetchmailrc"
  CMD=(fetchmail -f "$R/fetchmailrc" --idfile "$R/fetchids" --pidfile "$R/fetchmail.pid" --nodetach --silent)
}

setup_getmail() { # POP3 only
  local port=$2 keep=$3 del=true all=true
  [ "$keep" = 1 ] && del=false
  [ "${NOMAIL_RUN:-0}" = 1 ] && all=false   # only mail not seen before
  mkdir -p "$R/getmail"
  {
    echo "[retriever]"
    echo "type = SimplePOP3SSLRetriever"
    echo "server = localhost"
    echo "port = $port"
    echo "username = user1"
    echo "password = secret"
    echo "ca_certs = $CERT"
    echo
    echo "[destination]"
    echo "type = Maildir"
    echo "path = $R/Maildir/"
    # getmail refuses to deliver as root; it then needs a user to deliver as.
    [ "$IS_ROOT" = 1 ] && echo "user = nobody"
    echo
    echo "[options]"
    echo "delete = $del"
    echo "read_all = $all"
    echo "verbose = 0"
    echo "message_log_syslog = false"
  } > "$R/getmailrc"
  chmod 600 "$R/getmailrc"
  [ "$IS_ROOT" = 1 ] && chown -R nobody "$R/Maildir"
  CMD=(getmail --getmaildir "$R/getmail" --rcfile "$R/getmailrc")
}

setup_mbsync() { # IMAP only; Pull never deletes on the server
  local port=$2
  cat > "$R/mbsyncrc" <<EOF
IMAPAccount bench
Host localhost
Port $port
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
  CMD=(mbsync -c "$R/mbsyncrc" -q bench)
}

# ---------------------------------------------------------------- running and timing
RESULTS=$WORK/results.tsv
: > "$RESULTS"
RUN_SEQ=0

# timed_run: runs CMD in $R, sets T (seconds, 0.1 ms precision), RSS (KB), RC.
# The clock is bench/timed.c's, around one fork, exec and wait of the
# tool: neither the shell's subshell nor the timer's own start-up is in it.
timed_run() {
  rm -f "$R/time.out"
  set +e
  (cd "$R" && HOME=$R exec "$TIMED" "$R/time.out" "${CMD[@]}") >"$R/stdout" 2>"$R/stderr"
  RC=$?
  set -e
  [ -s "$R/time.out" ] || fail_run "the timer wrote no time (status $RC)"
  T=$(awk '{printf "%.4f", $1}' "$R/time.out")
  RSS=$(awk '{print $2}' "$R/time.out")
}

fail_run() {
  echo "FAILED: $*" >&2
  echo "--- run dir $R; stdout/stderr tail:" >&2
  tail -n 15 "$R/stdout" "$R/stderr" >&2 || true
  exit 1
}

new_rundir() { # LABEL
  RUN_SEQ=$((RUN_SEQ + 1))
  R=$WORK/runs/$(printf '%03d' "$RUN_SEQ")-$1
  mkdir -p "$R/Maildir/new" "$R/Maildir/cur" "$R/Maildir/tmp"
}

expect_rc() { # TOOL RC  -> 0 if acceptable for a run that should retrieve mail
  case "$1" in
    *) [ "$2" = 0 ] ;;
  esac
}

# add_result SCENARIO TOOL PEAK_RSS_KB MESSAGES ALTERED SECONDS...: one row
# of the results table, the median of the SECONDS of its runs (and, last,
# every one of them, comma-separated, for the ratio's interval).
add_result() {
  local scen=$1 tool=$2 rss=$3 n=$4 altered=$5 med all
  shift 5
  med=$(printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  all=$(printf '%s,' "$@"); all=${all%,}
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$tool" "$med" "$rss" "$n" "$altered" "$all" >> "$RESULTS"
}

# bench_fetch SCENARIO CORPUS N PROTO PORT KEEP TOOL
bench_fetch() {
  local scen=$1 corpus=$2 n=$3 proto=$4 port=$5 keep=$6 tool=$7
  local times=() rss_max=0 run altered=0 v vrc left
  for run in $(seq "$RUNS"); do
    restore_mailbox "$corpus"
    new_rundir "$scen-$tool"
    "setup_$tool" "$proto" "$port" "$keep"
    timed_run
    expect_rc "$tool" "$RC" || fail_run "$scen/$tool exited with status $RC"
    set +e
    v=$(python3 "$BENCH/verify.py" "$WORK/corpus-$corpus" "$R/Maildir" --expect "$n" 2>"$R/verify.err")
    vrc=$?
    set -e
    cat "$R/verify.err" >&2
    [ "$vrc" = 0 ] || [ "$vrc" = 3 ] || fail_run "$scen/$tool: delivered $(echo "$v" | cut -d' ' -f1) of $n messages"
    altered=$(echo "$v" | cut -d' ' -f2)
    left=$(server_count)
    if [ "$keep" = 1 ]; then
      [ "$left" = "$n" ] || fail_run "$scen/$tool: keep mode, but $left of $n messages left on the server"
    else
      [ "$left" = 0 ] || fail_run "$scen/$tool: delete mode, but $left messages still on the server"
    fi
    times+=("$T")
    [ "$RSS" -gt "$rss_max" ] && rss_max=$RSS
    printf '   %-22s %-10s run %d/%d: %7.3f s  %7d KB  rc=%s  %s msgs%s\n' "$scen" "$tool" "$run" "$RUNS" "$T" "$RSS" "$RC" "$n" \
      "$([ "$altered" != 0 ] && echo ", $altered altered")"
  done
  add_result "$scen" "$tool" "$rss_max" "$n" "$altered" "${times[@]}"
}

# bench_nomail SCENARIO CORPUS N PROTO PORT SLOWPORT TOOL...: fetch
# everything (keep mode), let the server's Maildir index settle (neutral
# sessions, bench/settle.py), then time the runs after it, which must find
# nothing new. The tools take turns, run after run, so a drift of the
# machine's speed falls on all of them alike. With SLOWPORT (empty: none)
# the priming run still goes over loopback (fetchmail would take minutes
# for 2,000 messages at 40 ms), then the tool's config is pointed at the
# latency proxy. The first no-mail run (through the proxy, if any) is
# timed as SCENARIO-first: the run right after a full fetch. The STEADY
# runs after it (1.1 s apart) are SCENARIO, the steady state of a cron
# job: whatever a tool keeps between runs (mailretr's TLS session and run
# count, its WAL) is as it would be on the hundredth run. They are cheap
# next to the priming fetch (fetchmail's and mbsync's take about 10 s),
# so the steady median rests on RUNS x STEADY runs per tool instead of
# RUNS: a ratio of two medians of 11 runs each moved by +-0.08 from one
# bench to the next on this 2-core host.
bench_nomail() {
  local scen=$1 corpus=$2 n=$3 proto=$4 port=$5 slowport=$6
  shift 6
  local run got f first tool steady
  local -A times=() rss_max=() times_first=() rss_first=()
  for run in $(seq "$RUNS"); do
    for tool in "$@"; do
      restore_mailbox "$corpus"
      new_rundir "$scen-$tool"
      NOMAIL_RUN=1 "setup_$tool" "$proto" "$port" 1
      timed_run
      [ "$RC" = 0 ] || fail_run "$scen/$tool first (priming) run exited with status $RC"
      first=$T
      # Let Dovecot's Maildir index settle, the same for every tool (see
      # bench/settle.py: a priming fetch as short as mailretr's leaves cur/
      # "dirty", and the next two sessions then read it again, while a 10 s
      # one cleans it itself). It also lets the clock tick (more than 4 s):
      # maildir-based tools (mbsync) stall for up to a second when the
      # Maildir was modified within the current second.
      python3 "$BENCH/settle.py" "$proto" "$port" "$CERT" "$MAILBOX" user1 secret >/dev/null \
        || fail_run "$scen/$tool: the server's Maildir index did not settle after the priming run"
      if [ -n "$slowport" ]; then
        for f in "$R/mailretr.toml" "$R/fetchmailrc" "$R/getmailrc" "$R/mbsyncrc"; do
          if [ -f "$f" ]; then sed -i -E "s/^(port = |  *poll localhost protocol pop3 port |poll localhost protocol pop3 port |Port )$port\b/\1$slowport/" "$f"; fi
        done
        grep -rqs -E "(port = |port |Port )$slowport\b" "$R" || fail_run "$scen/$tool: could not point the config at port $slowport"
      fi
      timed_run
      nomail_rc_ok "$scen-first" "$tool"
      times_first[$tool]+="$T "
      [ "$RSS" -gt "${rss_first[$tool]:-0}" ] && rss_first[$tool]=$RSS
      printf '   %-28s %-10s run %d/%d: %7.3f s  %7d KB  rc=%s  (priming run %.1f s)\n' "$scen-first" "$tool" "$run" "$RUNS" "$T" "$RSS" "$RC" "$first"
      for steady in $(seq "$STEADY"); do
        sleep 1.1
        timed_run
        nomail_rc_ok "$scen" "$tool"
        times[$tool]+="$T "
        [ "$RSS" -gt "${rss_max[$tool]:-0}" ] && rss_max[$tool]=$RSS
        printf '   %-28s %-10s run %d/%d.%d: %7.3f s  %7d KB  rc=%s\n' "$scen" "$tool" "$run" "$RUNS" "$steady" "$T" "$RSS" "$RC"
      done
      got=$(python3 "$BENCH/verify.py" "$WORK/corpus-$corpus" "$R/Maildir" --quick | cut -d' ' -f1) || true
      [ "$got" = "$n" ] || fail_run "$scen/$tool: $got messages in the Maildir after $((STEADY + 2)) runs, expected $n (re-fetched?)"
      [ "$(server_count)" = "$n" ] || fail_run "$scen/$tool: keep mode, but the server lost messages"
    done
  done
  # shellcheck disable=SC2086 # the lists of times, split on purpose
  for tool in "$@"; do add_result "$scen-first" "$tool" "${rss_first[$tool]}" "$n" 0 ${times_first[$tool]}; done
  # shellcheck disable=SC2086
  for tool in "$@"; do add_result "$scen" "$tool" "${rss_max[$tool]}" "$n" 0 ${times[$tool]}; done
}

nomail_rc_ok() { # SCENARIO TOOL: a no-mail run's status (RC) as each tool says "nothing new"
  case "$2:$RC" in
    mailretr:1|fetchmail:1|getmail:0|mbsync:0) ;;
    mailretr:0) echo "   warning: $1: mailretr exited 0 (mail retrieved), expected 1 (no new mail)" >&2 ;;
    *) fail_run "$1/$2 no-mail run exited with status $RC" ;;
  esac
}

tools_for() { # PROTO PEERLIST -> mailretr first, then the peers that speak PROTO
  local out=() p
  [ "$WITH_MAILRETR" = 1 ] && out+=(mailretr)
  for p in ${2//,/ }; do
    case "$1:$p" in pop3:fetchmail|pop3:getmail|imap:mbsync) out+=("$p") ;; esac
  done
  echo "${out[@]}"
}

want() { # SCENARIO-KIND
  case "$ONLY" in
    "") return 0 ;;
    nomail) [ "$1" = nomail-pop3 ] || [ "$1" = nomail-imap ] ;;
    pop3) [ "$1" = pop3 ] || [ "$1" = nomail-pop3 ] ;;
    imap) [ "$1" = imap ] || [ "$1" = nomail-imap ] ;;
  esac
}

# ---------------------------------------------------------------- scenarios
POP3_KEEP=0; [ "$MODE" = keep ] && POP3_KEEP=1

run_fetch_scenarios() { # PROTO
  local proto=$1 port slowport keep tool tools
  if [ "$proto" = pop3 ]; then port=$POP3S_PORT; slowport=$SLOW_POP3S_PORT; keep=$POP3_KEEP
  else port=$IMAPS_PORT; slowport=$SLOW_IMAPS_PORT; keep=1; fi   # mbsync cannot delete: IMAP is keep mode
  tools=$(tools_for "$proto" "$PEERS")
  [ -n "$tools" ] || return 0
  if [ "$MESSAGES" -gt 0 ]; then
    make_corpus "m$MESSAGES" "$MESSAGES" mixed
    echo "== ${proto}s-loopback: $MESSAGES messages (${CORPUS_MB[m$MESSAGES]} MB), $([ "$keep" = 1 ] && echo keep || echo delete) mode"
    for tool in $tools; do bench_fetch "${proto}s-loopback" "m$MESSAGES" "$MESSAGES" "$proto" "$port" "$keep" "$tool"; done
  fi
  if [ "$RTT_MS" -gt 0 ] && [ "$SLOW_MESSAGES" -gt 0 ]; then
    make_corpus "m$SLOW_MESSAGES" "$SLOW_MESSAGES" mixed
    echo "== ${proto}s-rtt${RTT_MS}ms: $SLOW_MESSAGES messages (${CORPUS_MB[m$SLOW_MESSAGES]} MB), $([ "$keep" = 1 ] && echo keep || echo delete) mode, via slowlink"
    for tool in $tools; do bench_fetch "${proto}s-rtt${RTT_MS}ms" "m$SLOW_MESSAGES" "$SLOW_MESSAGES" "$proto" "$slowport" "$keep" "$tool"; done
  fi
}

run_nomail_scenario() { # PROTO
  local proto=$1 port tool tools
  [ "$NOMAIL_MESSAGES" -gt 0 ] || return 0
  if [ "$proto" = pop3 ]; then port=$POP3S_PORT; else port=$IMAPS_PORT; fi
  tools=$(tools_for "$proto" "$NOMAIL_PEERS")
  [ -n "$tools" ] || return 0
  make_corpus "s$NOMAIL_MESSAGES" "$NOMAIL_MESSAGES" small
  echo "== nomail-${proto}s: $NOMAIL_MESSAGES messages (${CORPUS_MB[s$NOMAIL_MESSAGES]} MB) already retrieved, keep mode; timing the first and the second no-mail run"
  # shellcheck disable=SC2086 # the list of tools, split on purpose
  bench_nomail "nomail-${proto}s" "s$NOMAIL_MESSAGES" "$NOMAIL_MESSAGES" "$proto" "$port" "" $tools
  if [ "$RTT_MS" -gt 0 ] && [ "$NOMAIL_RTT" = 1 ]; then
    local slowport slow_tools=()
    if [ "$proto" = pop3 ]; then slowport=$SLOW_POP3S_PORT; else slowport=$SLOW_IMAPS_PORT; fi
    echo "== nomail-${proto}s-rtt${RTT_MS}ms: the same, the no-mail runs through slowlink"
    for tool in $tools; do
      # getmail keys what it has seen on the server's port: pointed at the
      # latency proxy's, it fetches everything again.
      if [ "$tool" = getmail ]; then
        echo "   (getmail skipped: its seen-state is per port, so the moved port re-fetches everything)"
        continue
      fi
      slow_tools+=("$tool")
    done
    bench_nomail "nomail-${proto}s-rtt${RTT_MS}ms" "s$NOMAIL_MESSAGES" "$NOMAIL_MESSAGES" "$proto" "$port" "$slowport" "${slow_tools[@]}"
  fi
}

NEED_SLOW_POP3=0; NEED_SLOW_IMAP=0
if [ "$RTT_MS" -gt 0 ] && [ "$SLOW_MESSAGES" -gt 0 ]; then
  if want pop3 && [ -n "$(tools_for pop3 "$PEERS")" ]; then NEED_SLOW_POP3=1; fi
  if want imap && [ -n "$(tools_for imap "$PEERS")" ]; then NEED_SLOW_IMAP=1; fi
fi
if [ "$RTT_MS" -gt 0 ] && [ "$NOMAIL_RTT" = 1 ] && [ "$NOMAIL_MESSAGES" -gt 0 ]; then
  if want nomail-pop3 && [ -n "$(tools_for pop3 "$NOMAIL_PEERS")" ]; then NEED_SLOW_POP3=1; fi
  if want nomail-imap && [ -n "$(tools_for imap "$NOMAIL_PEERS")" ]; then NEED_SLOW_IMAP=1; fi
fi
[ "$NEED_SLOW_POP3" = 1 ] && start_proxy "$SLOW_POP3S_PORT" "$POP3S_PORT"
[ "$NEED_SLOW_IMAP" = 1 ] && start_proxy "$SLOW_IMAPS_PORT" "$IMAPS_PORT"
if want pop3; then run_fetch_scenarios pop3; fi
if want imap; then run_fetch_scenarios imap; fi
if want nomail-pop3; then run_nomail_scenario pop3; fi
if want nomail-imap; then run_nomail_scenario imap; fi

# ---------------------------------------------------------------- report
[ -n "$OUT" ] && cp "$RESULTS" "$OUT"
echo
python3 - "$RESULTS" <<'EOF'
import random
import statistics
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
mr = {r[0]: float(r[2]) for r in rows if r[1] == "mailretr"}
runs = {(r[0], r[1]): [float(x) for x in r[6].split(",")] for r in rows}


def interval(a, b):
    # The ratio of the medians, resampled (bootstrap, 2,000 draws, a
    # fixed seed): the range that holds the middle 95% of the draws.
    if min(len(a), len(b)) < 5:
        return ""
    rng = random.Random(1)
    draws = sorted(
        statistics.median(rng.choices(a, k=len(a))) / statistics.median(rng.choices(b, k=len(b)))
        for _ in range(2000)
    )
    return " (%.2f-%.2f)" % (draws[50], draws[1949])


hdr = ("scenario", "tool", "seconds", "peak RSS MB", "messages", "mailretr/peer (95% interval)")
print("%-28s %-10s %9s %12s %9s  %s" % hdr)
print("-" * 104)
last = None
for scen, tool, sec, rss, n, altered, _ in rows:
    if last is not None and scen != last:
        print()
    last = scen
    sec = float(sec)
    ratio = ""
    if tool != "mailretr" and scen in mr and sec > 0:
        ratio = "%.2f" % (mr[scen] / sec)
        ratio += interval(runs[(scen, "mailretr")], runs[(scen, tool)])
    note = "  (%s altered)" % altered if altered not in ("", "0") else ""
    print("%-28s %-10s %9.4f %12.1f %9s  %s%s" % (scen, tool, sec, int(rss) / 1024, n, ratio, note))
print()
print("mailretr/peer = mailretr seconds / peer seconds (wall clock): < 1 means mailretr is faster.")
print("The interval (5 runs or more each): the middle 95% of that ratio over resampled runs.")
EOF
FAILED=0
