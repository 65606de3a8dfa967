#!/usr/bin/env bash
# `make debian-installer`: a real preseeded Debian 12 install with the release plugin, from the ISO that
# images/debian-installer/build-iso.sh assembled, into output-debian-12-preseed/ (the guest downloads the
# system from deb.debian.org: the mirror must serve the installer's .udeb files). Prints how long it took.
# EFI=1 installs with UEFI.
set -euo pipefail
cd "$(dirname "$0")/.."
export CHECKPOINT_DISABLE=1
work=$(mktemp -d /tmp/qemu-rs-installer.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/plugins"
cp target/release/packer-plugin-qemu-rs "$work/plugins/packer-builder-qemu-rs"
cp target/release/packer-plugin-qemu-rs "$work/plugins/packer-provisioner-qemu-rs-shell"
out=$PWD/output-debian-12-preseed
rm -rf "$out"
start=$(date +%s)
PACKER_PLUGIN_PATH=$work/plugins packer build -color=false \
  -var "iso_url=$PWD/images/debian-installer/out/debian-12-netboot-amd64.iso" \
  -var "iso_checksum=file:$PWD/images/debian-installer/out/SHA256SUMS" \
  -var "output_dir=$out" -var "efi_boot=$([ "${EFI:-0}" = 1 ] && echo true || echo false)" \
  images/debian-installer/debian-12-preseed.pkr.hcl
echo "debian-installer: installed and built in $(( $(date +%s) - start )) s: $out/debian-12.qcow2"
