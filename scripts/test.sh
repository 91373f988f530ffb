#!/usr/bin/env bash
# Runs every test of sonde: formatting, lints, unit and integration tests.
# Installs what the tests need when it is missing (Debian packages, rustup components),
# so it works on a fresh machine. Integration tests start real servers on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages whose programs the tests run for real. scripts/packaging-test.sh needs
# musl-gcc (ring's C code), file, dpkg-deb, systemd-analyze, shellcheck (for actionlint),
# unshare and npm (the Prometheus operator schemas); tests/page.rs needs chromium (the
# status page in a real headless browser).
source scripts/needs.sh
install_missing test.sh \
  promtool=prometheus \
  prometheus-pushgateway=prometheus-pushgateway \
  prometheus-node-exporter=prometheus-node-exporter \
  prometheus-blackbox-exporter=prometheus-blackbox-exporter \
  openssl=openssl \
  prlimit=util-linux \
  docker-registry=docker-registry \
  htpasswd=apache2-utils \
  musl-gcc=musl-tools \
  file=file \
  dpkg-deb=dpkg \
  systemd-analyze=systemd \
  shellcheck=shellcheck \
  unshare=util-linux \
  npm=npm \
  chromium=chromium

for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked

# How sonde ships: static musl build, .deb + systemd unit, image, workflows, Kubernetes,
# Prometheus rules, compose and Rancher.
bash scripts/packaging-test.sh

# The side-by-side benchmark, briefly, so it cannot rot (not a gate: times are noisy).
bash bench/run.sh --quick
