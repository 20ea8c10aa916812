#!/usr/bin/env bash
# Installs the Debian 12 packages Tern needs to build, run and test. Idempotent: when every
# package is already installed it makes no apt call at all.
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build ccache pkg-config clang
  libboost1.81-dev libboost-json1.81-dev libssl-dev libsqlite3-dev libsodium-dev
  libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev libsimdjson-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  mosquitto mosquitto-clients python3-paho-mqtt curl sqlite3
  postgresql postgresql-client libpq-dev
  chromium  # the web app's browser tests (test/browser, npm playwright-core drives it)
)
# Node.js and npm build the web assets (web/, npm ci). Any node that brings npm will do (e.g. a
# NodeSource nodejs, which bundles npm and conflicts with Debian's npm package): only when there is
# no npm at all are Debian's packages installed.
if ! command -v npm >/dev/null 2>&1; then
  pkgs+=(nodejs npm)
fi
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has empty package lists: update first.
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
