#!/usr/bin/env bash
# Steps of the release workflow (.github/workflows/release.yml), kept here so that the
# test command runs the very same code (scripts/packaging-test.sh).
#
#   release.sh check-version TAG            TAG must be "v" + the version in Cargo.toml
#   release.sh package TARGET BINARY OUTDIR  sonde-<version>-<TARGET>.tar.gz of BINARY
#   release.sh checksums DIR                 DIR/SHA256SUMS of every other file in DIR
set -euo pipefail
cd "$(dirname "$0")/.."

# The version of the sonde package, from the first `version =` of Cargo.toml's [package].
cargo_version() {
  awk '/^\[package\]/ { p = 1; next } /^\[/ { p = 0 } p && /^version *=/ { gsub(/[" ]/, "", $0); sub(/^version=/, "", $0); print; exit }' Cargo.toml
}

die() {
  echo "release.sh: $*" >&2
  exit 1
}

case "${1:-}" in
  check-version)
    tag="${2:?usage: release.sh check-version TAG}"
    version="$(cargo_version)"
    [ -n "$version" ] || die "no version in Cargo.toml"
    [ "$tag" = "v$version" ] || die "tag $tag does not match Cargo.toml version $version (expected v$version)"
    echo "$version"
    ;;
  package)
    target="${2:?usage: release.sh package TARGET BINARY OUTDIR}"
    binary="${3:?usage: release.sh package TARGET BINARY OUTDIR}"
    outdir="${4:?usage: release.sh package TARGET BINARY OUTDIR}"
    version="$(cargo_version)"
    name="sonde-$version-$target"
    stage="$(mktemp -d)"
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/$name" "$outdir"
    install -m 0755 "$binary" "$stage/$name/sonde"
    install -m 0644 README.md packaging/sonde.yml packaging/systemd/sonde.service "$stage/$name/"
    # Reproducible archive: fixed owner, order and times.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' \
      -C "$stage" -czf "$outdir/$name.tar.gz" "$name"
    echo "$outdir/$name.tar.gz"
    ;;
  checksums)
    dir="${2:?usage: release.sh checksums DIR}"
    (
      cd "$dir"
      sums="$(find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort | xargs -r sha256sum)"
      [ -n "$sums" ] || die "no files to sum in $dir"
      printf '%s\n' "$sums" >SHA256SUMS
      cat SHA256SUMS
    )
    ;;
  *)
    die "usage: release.sh check-version TAG | package TARGET BINARY OUTDIR | checksums DIR"
    ;;
esac
