#!/usr/bin/env bash
# Installs the plugin binary where Packer finds it.
#   scripts/install-plugin.sh BINARY [LAYOUT]
# LAYOUT: legacy  - Packer 1.6.x: copies named packer-builder-qemu-rs, packer-provisioner-qemu-rs-shell and
#                   packer-post-processor-qemu-rs-convert
#                   in the plugin directory (first entry of PACKER_PLUGIN_PATH, else ~/.packer.d/plugins);
#         modern  - Packer 1.7+: the installed layout
#                   <dir>/github.com/qemu-rs/qemu-rs/packer-plugin-qemu-rs_vVERSION_x5.0_linux_amd64 + _SHA256SUM
#                   (what `packer plugins install --path BINARY github.com/qemu-rs/qemu-rs` makes);
#         both    - both (default).
# Packer 1.7-1.10 also loads legacy packer-builder-* files and rejects their 1.6-style handshake: with those
# versions, install with LAYOUT=modern only.
set -euo pipefail
bin=${1:?usage: install-plugin.sh BINARY [legacy|modern|both]}
layout=${2:-both}
[ -x "$bin" ] || { echo "install-plugin: $bin is not an executable; run 'make build' first" >&2; exit 1; }

if [ -n "${PACKER_PLUGIN_PATH:-}" ]; then
  dir=${PACKER_PLUGIN_PATH%%:*}
elif [ -n "${PACKER_CONFIG_DIR:-}" ]; then
  dir="$PACKER_CONFIG_DIR/.packer.d/plugins"
else
  dir="$HOME/.packer.d/plugins"
fi
mkdir -p "$dir"

case "$layout" in legacy|modern|both) ;; *) echo "install-plugin: unknown layout '$layout' (legacy|modern|both)" >&2; exit 1;; esac

if [ "$layout" != modern ]; then
  for name in packer-builder-qemu-rs packer-provisioner-qemu-rs-shell packer-post-processor-qemu-rs-convert; do
    install -m 0755 "$bin" "$dir/$name.tmp" && mv -f "$dir/$name.tmp" "$dir/$name"
    echo "installed $dir/$name"
  done
fi
if [ "$layout" != legacy ]; then
  version=$(PACKER_PLUGIN_MAGIC_COOKIE=d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2 \
    "$bin" describe | sed -n 's/.*"version": *"\([^"]*\)".*/\1/p')
  [ -n "$version" ] || { echo "install-plugin: '$bin describe' gave no version" >&2; exit 1; }
  arch=$(uname -m); case "$arch" in x86_64) arch=amd64;; aarch64) arch=arm64;; esac
  target="$dir/github.com/qemu-rs/qemu-rs/packer-plugin-qemu-rs_v${version}_x5.0_linux_${arch}"
  mkdir -p "$(dirname "$target")"
  install -m 0755 "$bin" "$target.tmp" && mv -f "$target.tmp" "$target"
  sha256sum "$target" | cut -d' ' -f1 > "${target}_SHA256SUM"
  echo "installed $target"
fi
