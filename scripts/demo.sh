#!/usr/bin/env bash
# The demo: runs Packer (Debian's 1.6.6) with the installed qemu-rs plugin, first on the tiny test guest
# (a fast first step), then, the main act, on a real Debian 12 cloud image with the template users copy
# (images/debian-cloud/debian-12-genericcloud.pkr.hcl), leaving the image in output-debian-12/.
# Called by `make demo` after the plugin, the test guest and the Debian image are built.
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

if [ "${QEMU_RS_DEMO_BUILD:-1}" = 1 ]; then
  out=$PWD/output-debian-12
  echo "== demo: packer build images/debian-cloud/debian-12-genericcloud.pkr.hcl (Debian 12, systemd, cloud-init; 5-10 minutes under TCG)"
  rm -rf "$out"
  packer build -var "iso_url=$PWD/images/debian-cloud/out/debian-12-genericcloud-amd64.qcow2" \
    -var "iso_checksum=file:$PWD/images/debian-cloud/out/SHA256SUMS" -var "output_dir=$out" \
    images/debian-cloud/debian-12-genericcloud.pkr.hcl
  # a key and a NoCloud seed for booting the result
  ssh-keygen -q -t ed25519 -N '' -C qemu-rs-demo -f "$out/id_ed25519"
  mkdir -p "$work/seed"
  printf 'instance-id: demo\nlocal-hostname: debian-12-demo\n' > "$work/seed/meta-data"
  printf '#cloud-config\nssh_authorized_keys:\n  - %s\n' "$(cat "$out/id_ed25519.pub")" > "$work/seed/user-data"
  xorriso -as mkisofs -quiet -o "$out/seed.iso" -volid cidata -joliet -rock "$work/seed/meta-data" "$work/seed/user-data"
  ls -l "$out"
  cat <<EOF
== demo: done. Boot the image (add -accel kvm where KVM works) and log in as debian:
   qemu-system-x86_64 -m 1024 -drive file=$out/debian-12.qcow2,if=virtio -cdrom $out/seed.iso \\
     -nic user,hostfwd=tcp:127.0.0.1:2222-:22 -nographic
   ssh -i $out/id_ed25519 -p 2222 debian@127.0.0.1
EOF
fi
