#!/usr/bin/env bash
# Builds a Debian 12 cloud image from Debian's packages: a stand-in for Debian's published
# `debian-12-genericcloud-amd64.qcow2`, which cannot be downloaded on a machine that reaches only the
# package mirror (see README.md in this directory).
#
#   images/debian-cloud/build.sh         # build into images/debian-cloud/out/ (no-op when up to date)
#
# Environment (all optional):
#   OUT=DIR       output directory                         (default: images/debian-cloud/out)
#   MIRROR=URL    Debian mirror                            (default: http://deb.debian.org/debian)
#   SECURITY=URL  Debian security mirror                   (default: http://deb.debian.org/debian-security)
#   FORCE=1       rebuild even when the inputs are unchanged
#
# What it makes, like Debian's genericcloud image: a 2 GiB GPT disk with partition 14 "BIOS boot" (GRUB's
# core for SeaBIOS), 15 an EFI system partition (GRUB for UEFI, no Secure Boot shim) and 1 the ext4 root
# filesystem last, so that cloud-init's growpart can grow it into a larger disk; systemd, cloud-init
# (NoCloud and ConfigDrive seeds; default user `debian`, no password, sudo without password), OpenSSH with
# host keys made at first boot, console on tty0 and ttyS0. Output: out/debian-12-genericcloud-amd64.qcow2
# (compressed) and out/SHA256SUMS.
#
# Needs root (mmdebstrap in root mode, chroot); no loop devices and no mounts: the file systems are made
# from directories (`mkfs.ext4 -d`, mtools) and written into the disk file at their partitions' offsets.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/out}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}
NAME=debian-12-genericcloud-amd64
export LC_ALL=C TZ=UTC

# Fixed identities: the image is a template, every clone gets new ones at first boot where it matters
# (machine-id, SSH host keys); the file system UUIDs are what GRUB and fstab look for.
ROOT_UUID=7d4c1e0a-d1b0-4e1c-9a1f-0de0b1a12001
ESP_ID=DEB12E5F                          # FAT volume id, written as DEB1-2E5F in fstab
DISK_MIB=2048
# Partition layout of Debian's cloud images (in MiB): 14 BIOS boot at 1, 15 ESP at 4, 1 root at 128.
BIOS_START=1 BIOS_MIB=3 ESP_START=4 ESP_MIB=124 ROOT_START=128
# Packages on top of mmdebstrap's minbase (Debian's cloud images use about the same set).
PACKAGES="linux-image-cloud-amd64 systemd-sysv udev dbus kmod iproute2 ifupdown isc-dhcp-client netbase
  openssh-server sudo curl cloud-init cloud-guest-utils fdisk e2fsprogs grub-pc-bin grub-efi-amd64-bin grub2-common
  ca-certificates less procps"

log() { printf 'debian-cloud: %s\n' "$*" >&2; }
die() { printf 'debian-cloud: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || exec sudo --preserve-env=OUT,MIRROR,SECURITY,FORCE "$0" "$@"

# ---------------------------------------------------------------------------------------------------------
# 0. Up to date? The inputs are this script, the files beside it and the mirrors.
# ---------------------------------------------------------------------------------------------------------
HASH=$( { cat "$0"; find "$HERE/overlay" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum;
          echo "$MIRROR $SECURITY"; } | sha256sum | cut -d' ' -f1)
if [ -z "${FORCE:-}" ] && [ -f "$OUT/.inputs" ] && [ "$(cat "$OUT/.inputs")" = "$HASH" ] &&
   [ -f "$OUT/$NAME.qcow2" ] && (cd "$OUT" && sha256sum --quiet -c SHA256SUMS 2>/dev/null); then
  log "up to date: $OUT/$NAME.qcow2"
  exit 0
fi

# ---------------------------------------------------------------------------------------------------------
# 1. Host tools
# ---------------------------------------------------------------------------------------------------------
need=()
for t in mmdebstrap:mmdebstrap sfdisk:fdisk mkfs.ext4:e2fsprogs mkfs.vfat:dosfstools mcopy:mtools \
         grub-mkimage:grub-common /usr/lib/grub/i386-pc/boot.img:grub-pc-bin \
         /usr/lib/grub/x86_64-efi/normal.mod:grub-efi-amd64-bin qemu-img:qemu-utils python3:python3; do
  cmd=${t%%:*} pkg=${t#*:}
  if [[ $cmd == /* ]]; then [ -e "$cmd" ] || need+=("$pkg"); else command -v "$cmd" >/dev/null || need+=("$pkg"); fi
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/debian-cloud.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
R=$WORK/root
mkdir -p "$R"

# ---------------------------------------------------------------------------------------------------------
# 2. The root file system from Debian's packages
# ---------------------------------------------------------------------------------------------------------
log "mmdebstrap bookworm from $MIRROR (about 3 minutes)"
start=$(date +%s)
mmdebstrap --variant=minbase --include="$(echo $PACKAGES | tr ' ' ',')" \
  --aptopt='Acquire::Retries "3"' \
  bookworm "$R" "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
  "deb $SECURITY bookworm-security main" >"$WORK/mmdebstrap.log" 2>&1 ||
  { tail -30 "$WORK/mmdebstrap.log" >&2; die "mmdebstrap failed (log above)"; }
log "mmdebstrap: $(( $(date +%s) - start )) s"

KVER=$(cd "$R/boot" && ls vmlinuz-* | sed 's/^vmlinuz-//' | sort -V | tail -1)
[ -n "$KVER" ] || die "no kernel in the image"

# Overlay: cloud-init, GRUB defaults, network (overlay/ beside this script).
cp -a "$HERE/overlay/." "$R/"
cat > "$R/etc/fstab" <<EOF
# <file system>  <mount point>  <type>  <options>  <dump>  <pass>
UUID=$ROOT_UUID  /  ext4  rw,discard,errors=remount-ro,x-systemd.growfs  0  1
UUID=${ESP_ID:0:4}-${ESP_ID:4:4}  /boot/efi  vfat  umask=0077,nofail  0  1
EOF
mkdir -p "$R/boot/efi"
echo localhost > "$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"

# GRUB: modules for both platforms on the root file system, and a grub.cfg like grub-mkconfig's (which
# cannot run here: it probes the block device of /). `update-grub` in the guest regenerates it from
# /etc/default/grub (overlay/etc/default/grub: same command line, serial console).
mkdir -p "$R/boot/grub"
cp -a "$R/usr/lib/grub/i386-pc" "$R/usr/lib/grub/x86_64-efi" "$R/boot/grub/"
# shellcheck disable=SC1091
CMDLINE=$(. "$R/etc/default/grub"; echo "$GRUB_CMDLINE_LINUX_DEFAULT $GRUB_CMDLINE_LINUX")
cat > "$R/boot/grub/grub.cfg" <<EOF
# made by images/debian-cloud/build.sh; \`update-grub\` in the guest replaces it
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=1
set default=0
insmod part_gpt
insmod ext2
search --no-floppy --fs-uuid --set=root $ROOT_UUID
menuentry 'Debian GNU/Linux 12 (bookworm)' {
  insmod gzio
  linux /boot/vmlinuz-$KVER root=UUID=$ROOT_UUID ro $CMDLINE
  initrd /boot/initrd.img-$KVER
}
EOF

# A template has no identity: machine-id and SSH host keys are made at first boot; no apt lists.
rm -f "$R"/etc/ssh/ssh_host_*_key "$R"/etc/ssh/ssh_host_*_key.pub
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb "$R"/var/log/*.log
chroot "$R" dpkg-query -W -f='${Package} ${Version}\n' > "$WORK/packages.txt"

# ---------------------------------------------------------------------------------------------------------
# 3. File systems and the disk
# ---------------------------------------------------------------------------------------------------------
ROOT_MIB=$((DISK_MIB - ROOT_START - 1))            # 1 MiB at the end for the backup GPT
log "ext4 root file system ($ROOT_MIB MiB, $(du -sm "$R" | cut -f1) MiB used)"
truncate -s "${ROOT_MIB}M" "$WORK/root.img"
mkfs.ext4 -q -F -L root -U "$ROOT_UUID" -d "$R" "$WORK/root.img" >/dev/null

# GRUB for UEFI: one image that finds the root file system by UUID and loads /boot/grub/grub.cfg.
cat > "$WORK/early.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $ROOT_UUID
set prefix=(\$root)/boot/grub
EOF
grub-mkimage -O x86_64-efi -o "$WORK/BOOTX64.EFI" -c "$WORK/early.cfg" -p /boot/grub \
  part_gpt part_msdos ext2 fat search search_fs_uuid normal configfile linux gzio echo serial terminal efi_gop
truncate -s "${ESP_MIB}M" "$WORK/esp.img"
mkfs.vfat -F 32 -n EFI -i "$ESP_ID" "$WORK/esp.img" >/dev/null 2>&1 || mkfs.vfat -n EFI -i "$ESP_ID" "$WORK/esp.img" >/dev/null
mmd -i "$WORK/esp.img" ::/EFI ::/EFI/BOOT ::/EFI/debian
mcopy -i "$WORK/esp.img" "$WORK/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$WORK/esp.img" "$WORK/BOOTX64.EFI" ::/EFI/debian/grubx64.efi

# GRUB for BIOS: core.img in the BIOS boot partition, boot.img in the MBR.
grub-mkimage -O i386-pc -o "$WORK/core.img" -c "$WORK/early.cfg" -p /boot/grub \
  biosdisk part_gpt ext2 search search_fs_uuid
core_sectors=$(( ($(stat -c %s "$WORK/core.img") + 511) / 512 ))
[ "$core_sectors" -le $((BIOS_MIB * 2048)) ] || die "GRUB's core.img ($core_sectors sectors) does not fit the BIOS boot partition"

log "disk: GPT, ${DISK_MIB} MiB"
DISK=$WORK/disk.raw
truncate -s "${DISK_MIB}M" "$DISK"
sfdisk -q "$DISK" <<EOF
label: gpt
${DISK}1 : start=$((ROOT_START * 2048)), size=$((ROOT_MIB * 2048)), type=0FC63DAF-8483-4772-8E3D-3F27D84765E4, name="root"
${DISK}14 : start=$((BIOS_START * 2048)), size=$((BIOS_MIB * 2048)), type=21686148-6E49-6F6E-744E-656564454649, name="bios"
${DISK}15 : start=$((ESP_START * 2048)), size=$((ESP_MIB * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"
EOF
dd if="$WORK/root.img" of="$DISK" bs=1M seek="$ROOT_START" conv=notrunc,sparse status=none
dd if="$WORK/esp.img" of="$DISK" bs=1M seek="$ESP_START" conv=notrunc,sparse status=none
dd if="$WORK/core.img" of="$DISK" bs=1M seek="$BIOS_START" conv=notrunc status=none

# What grub-bios-setup does, written out because it insists on probing a block device for the GRUB
# directory: boot.img's code goes into the MBR (the GPT's protective partition table stays), told where
# core.img starts; core.img's first sector (diskboot) is told where the rest of core.img is.
python3 - "$DISK" /usr/lib/grub/i386-pc/boot.img $((BIOS_START * 2048)) <<'EOF'
import struct, sys
disk, boot_img, core = sys.argv[1], sys.argv[2], int(sys.argv[3])
boot = bytearray(open(boot_img, "rb").read())
assert len(boot) == 512
with open(disk, "r+b") as f:
    mbr = bytearray(f.read(512))
    mbr[0:0x1B8] = boot[0:0x1B8]          # code, up to the disk signature and partition table
    struct.pack_into("<Q", mbr, 0x5C, core)   # GRUB_BOOT_MACHINE_KERNEL_SECTOR
    f.seek(0)
    f.write(mbr)
    f.seek(core * 512)
    diskboot = bytearray(f.read(512))
    start, length, segment = struct.unpack_from("<QHH", diskboot, 500)
    assert length > 0 and segment == 0x820, (start, length, segment)
    struct.pack_into("<Q", diskboot, 500, core + 1)   # the first block list entry: the rest of core.img
    f.seek(core * 512)
    f.write(diskboot)
EOF

log "qcow2 (compressed)"
qemu-img convert -q -c -f raw -O qcow2 "$DISK" "$WORK/$NAME.qcow2"

mkdir -p "$OUT"
mv -f "$WORK/$NAME.qcow2" "$OUT/"
cp "$WORK/packages.txt" "$OUT/packages.txt"
printf '%s\n' "$KVER" > "$OUT/kernel-release"
(cd "$OUT" && sha256sum "$NAME.qcow2" > SHA256SUMS)
printf '%s\n' "$HASH" > "$OUT/.inputs"
log "done: $OUT/$NAME.qcow2 ($(stat -c %s "$OUT/$NAME.qcow2") bytes, kernel $KVER, $(wc -l < "$OUT/packages.txt") packages)"
