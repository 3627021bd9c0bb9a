#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) each, JOBS at a time
# (default 2), then minimises each corpus in place. Needs cargo-fuzz and
# a nightly toolchain (or RUSTC_BOOTSTRAP=1 on stable). Logs go to
# fuzz/logs/TARGET.log; crashes to fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
jobs=${JOBS:-2}
targets=(pop3_session imap_bodies imap_starttls scram_server lmtp_reply headers config imap_lines mime7bit imap_deflate)
toolchain=+nightly
rustup toolchain list | grep -q nightly || { toolchain=; export RUSTC_BOOTSTRAP=1; }
cargo $toolchain fuzz build
mkdir -p logs
run() {
  cargo $toolchain fuzz run "$1" -- -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 \
    >"logs/$1.log" 2>&1 || echo "$1: FAILED (see fuzz/logs/$1.log)"
  tail -n 3 "logs/$1.log" | grep -E "Done|stat::" || true
}
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
  for t in "${targets[@]:i:jobs}"; do run "$t" & done
  wait
done
for t in "${targets[@]}"; do
  cargo $toolchain fuzz cmin "$t" >"logs/$t.cmin.log" 2>&1 || echo "$t: cmin failed"
done
