#!/usr/bin/env bash
# sonde beside its peers in one run: CPU per probe against Debian's blackbox_exporter,
# scrape latency against nginx serving the same bytes, RSS, start-up time, binary size.
#   bash bench/run.sh           the full run (a few minutes), figures for the README
#   bash bench/run.sh --quick   every measurement briefly (CI runs this so it cannot rot)
# Builds the static musl release binary (what sonde ships) and bench/floor.rs (the floor
# under CPU per probe), and installs what is missing
# (Debian packages nginx, prometheus-blackbox-exporter, openssl, musl-tools), as the test
# command does. Prints a table of figures, ratios and PASS/FAIL against each goal; the
# exit code does not depend on the goals (times are noisy on a shared machine).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/needs.sh
install_missing bench nginx=nginx prometheus-blackbox-exporter=prometheus-blackbox-exporter \
  openssl=openssl musl-gcc=musl-tools
# Debian starts the packaged services; the benchmark runs its own on 127.0.0.1.
TARGET=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
cargo build --release --locked --target "$TARGET" --quiet --bin sonde --example floor
OUT="${CARGO_TARGET_DIR:-target}/$TARGET/release"
exec python3 bench/bench.py --sonde "$OUT/sonde" --floor "$OUT/examples/floor" "$@"
