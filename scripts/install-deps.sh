#!/usr/bin/env bash
# Installs the Debian packages qemu-rs needs to build, test and demo, when they are missing.
# Safe to run again: it does nothing when everything is there. Needs root (or sudo) for apt-get.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# host tools: packer 1.6.6 (Debian), QEMU + firmware, ISO tools, sshd for provisioner tests,
# e2fsprogs (debugfs) to inspect artifacts, python3 for bench/run.py; qemu-block-extra (QEMU's curl
# driver, for iso_skip_cache), qemu-system-arm + qemu-efi-aarch64 (aarch64 argv/firmware tests)
PKGS=(packer qemu-system-x86 qemu-utils qemu-block-extra qemu-system-arm qemu-efi-aarch64 ovmf xorriso
      openssh-server openssh-client e2fsprogs
      grub-pc-bin grub-efi-amd64-bin grub-common mtools faketime cpio dpkg-dev curl ca-certificates python3
      swtpm dosfstools dnsmasq-base iproute2 mmdebstrap fdisk isolinux syslinux-common zip unzip gnupg)
# swtpm: vtpm; mtools: floppy_* images (dosfstools' fsck.fat checks them in tests); dnsmasq-base and
# iproute2: the net_bridge test's DHCP server and network namespace; mmdebstrap and fdisk (sfdisk): the
# Debian cloud image of images/debian-cloud; isolinux and syslinux-common: the installer ISO of
# images/debian-installer; zip, unzip and gnupg: `make release` and its test

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# qemu-system-x86 and qemu-utils must come from the same QEMU release (a backported qemu-utils
# breaks Debian's qemu-system-common): pin qemu-utils to qemu-system-x86's version.
if command -v qemu-system-x86_64 >/dev/null && command -v qemu-img >/dev/null; then
  sysv=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
  imgv=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
  [ "$sysv" = "$imgv" ] || missing+=(qemu-utils)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
ver=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/{print $2}')
args=()
for p in "${missing[@]}"; do
  if [ "$p" = qemu-utils ] && [ -n "$ver" ]; then args+=("qemu-utils=$ver"); else args+=("$p"); fi
done
$SUDO apt-get install -y -q --allow-downgrades "${args[@]}" qemu-system-x86 "qemu-utils=$ver"
