#!/usr/bin/env bash
# The demo: runs Packer (Debian's 1.6.6) with the installed qemu-rs plugin on the test guest.
# Called by `make demo` after the plugin is built and installed and the test guest is built.
set -euo pipefail
cd "$(dirname "$0")/.."
export CHECKPOINT_DISABLE=1
guest=images/testguest
work=$(mktemp -d /tmp/qemu-rs-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== demo: packer validate $guest/testguest-iso-qemu-rs.pkr.hcl (source \"qemu-rs\", provisioner \"qemu-rs-shell\")"
packer validate -var "guest_dir=$PWD/$guest/out" -var "output_dir=$work/out-qemu-rs" "$guest/testguest-iso-qemu-rs.pkr.hcl"

if PACKER_PLUGIN_MAGIC_COOKIE=d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2 \
   target/release/packer-plugin-qemu-rs describe >/dev/null 2>&1 && [ "${QEMU_RS_DEMO_BUILD:-1}" = 1 ]; then
  echo "== demo: packer build with qemu-rs"
  packer build -var "guest_dir=$PWD/$guest/out" -var "output_dir=$work/out-qemu-rs" "$guest/testguest-iso-qemu-rs.pkr.hcl"
  ls -l "$work/out-qemu-rs"
fi
