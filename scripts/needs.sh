# shellcheck shell=bash
# Sourced by scripts/test.sh and bench/run.sh: installs the Debian packages whose
# programs are missing. Usage: install_missing WHO PROGRAM=PACKAGE...
install_missing() {
  local who=$1 pair missing=()
  shift
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null 2>&1 || missing+=("${pair#*=}")
  done
  ((${#missing[@]})) || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "$who: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
