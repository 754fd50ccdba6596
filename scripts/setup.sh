#!/usr/bin/env bash
# Installs what capstan needs to build, run and test, if it is missing:
# JACK 2 (server, tools, headers), PipeWire with its JACK layer (the tests
# run against both), liblo-tools (oscsend/oscdump), SuperCollider's sclang
# (an OSC client of our users, in the tests), sox and flac (independent
# readers of our files), Chromium and chromedriver (the web page's tests,
# in a real headless browser). No recommended
# packages: sclang alone, without its IDE and server.
set -euo pipefail
need=()
command -v jackd >/dev/null || need+=(jackd2)
command -v jack_lsp >/dev/null || need+=(jackd2)
pkg-config --exists jack 2>/dev/null || need+=(libjack-jackd2-dev pkg-config)
command -v pipewire >/dev/null || need+=(pipewire)
command -v pw-metadata >/dev/null || need+=(pipewire-bin)
command -v pw-jack >/dev/null || need+=(pipewire-jack)
command -v oscsend >/dev/null || need+=(liblo-tools)
command -v sclang >/dev/null || need+=(supercollider-language)
command -v sox >/dev/null || need+=(sox)
command -v soxi >/dev/null || need+=(sox)
command -v flac >/dev/null || need+=(flac)
command -v metaflac >/dev/null || need+=(flac)
command -v ip >/dev/null || need+=(iproute2)
command -v script >/dev/null || need+=(bsdutils)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v ardour7-lua >/dev/null || need+=(ardour)
if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
# The off-site tier's tests run against real object-store servers:
# Azurite (Microsoft's Azure Storage emulator, from npm; its containers
# are made with Microsoft's Python client) and s3s-fs (an S3 server, from
# crates; 0.14.1 is the newest that builds with this Rust).
command -v npm >/dev/null || need+=(npm)
offsite() {
  if [ "$(id -u)" -ne 0 ]; then
    command -v azurite-blob >/dev/null && command -v s3s-fs >/dev/null \
      || echo "setup: the off-site tests need: npm install -g azurite@3; pip install azure-storage-blob;" \
        "cargo install --locked s3s-fs@0.14.1 --features binary" >&2
    return 0
  fi
  command -v azurite-blob >/dev/null || npm install -g --silent azurite@3 >/dev/null
  python3 -c "import azure.storage.blob" 2>/dev/null \
    || pip install -q --root-user-action=ignore azure-storage-blob >/dev/null
  command -v s3s-fs >/dev/null || cargo install -q --locked s3s-fs@0.14.1 --features binary
}
if [ ${#need[@]} -eq 0 ]; then
  offsite
  exit 0
fi
pkgs=$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: $pkgs" >&2
  echo "setup: run: sudo apt-get install -y $pkgs" >&2
  exit 1
fi
echo "setup: installing $pkgs"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
offsite
