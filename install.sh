#!/usr/bin/env bash
# Installs NeuroCarto into .venv/; with --test, also what the test suite needs.
# Where apt-get is available it installs Debian's Fashion-MNIST (and Chromium for the tests);
# elsewhere the default data comes from torchvision's download into cache/.
set -euo pipefail
cd "$(dirname "$0")"
with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

if command -v apt-get >/dev/null 2>&1; then
  wanted=(dataset-fashion-mnist)
  [ "$with_tests" = 1 ] && wanted+=(chromium)
  missing=()
  for package in "${wanted[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"; } \
      || echo "install.sh: could not apt-get install ${missing[*]}; continuing without them" >&2
  fi
fi

python=python3
command -v python3.11 >/dev/null 2>&1 && python=python3.11
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
[ "$with_tests" = 1 ] && .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-test.txt
echo "install.sh: ready (.venv)"
