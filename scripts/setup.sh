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
if [ ${#need[@]} -eq 0 ]; then
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
