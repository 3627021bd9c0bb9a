#!/usr/bin/env bash
# Measures `mailretr watch` delivery latency: messages are injected through
# the test Dovecot's LMTP and timed until they appear in the Maildir
# (tests/watch.rs, lmtp_mail_is_delivered_within_seconds_and_sigterm_exits_0).
# Prints one line with the median, min and max over the messages of each
# round. Usage: bench/watch-latency.sh [ROUNDS]   (default 3)
#
# Part of the figure is Dovecot's own: it holds IDLE notifications back for
# about half a second to batch changes.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --quiet --tests
for _ in $(seq "$rounds"); do
    cargo test --quiet --test watch lmtp_mail_is_delivered -- --nocapture 2>/dev/null \
        | grep '^watch latency'
done
