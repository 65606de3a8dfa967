#!/usr/bin/env bash
# Builds the qemu-rs test guest from Debian packages only (see README.md in this directory).
#
#   images/testguest/build.sh            # build into images/testguest/out/ (no-op when up to date)
#
# Environment (all optional):
#   OUT=DIR       output directory            (default: images/testguest/out)
#   DEBS=DIR      .deb cache directory        (default: images/testguest/debs)
#   KVER=ABI      kernel ABI, e.g. 6.1.0-56-cloud-amd64 (default: the one already in DEBS, else the one
#                 linux-image-cloud-amd64 currently depends on)
#   FORCE=1       rebuild even when the inputs are unchanged
#
# No root needed once the host tools are installed (it installs missing ones with apt-get, via sudo when
# not root). No loop devices, no mounts. The output is bit-reproducible: same inputs, same SHA256SUMS.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/out}
DEBS=${DEBS:-$HERE/debs}
export SOURCE_DATE_EPOCH=1700000000          # 2023-11-14 22:13:20 UTC; every timestamp in the images
FAKE_DATE="2023-11-14 22:13:20"              # the same instant, frozen for grub-mkrescue under faketime
DATA_UUID=5e0f7a11-7e57-4e57-9e57-7e57900d0001   # ext2 UUID (and hash seed) of the tgdata partition
DATA_MB=64
SALT=testguestsalt01                         # fixed crypt salt of the built-in password "packer"
export TZ=UTC LC_ALL=C

log() { printf 'testguest: %s\n' "$*" >&2; }
die() { printf 'testguest: error: %s\n' "$*" >&2; exit 1; }

# Kernel modules loaded at boot, in this order after their dependencies. All of fs/nls is shipped too
# (modprobe works in the guest), the ones below are loaded eagerly.
BOOT_MODS="virtio_pci virtio_blk virtio_net virtio_scsi sd_mod ata_piix ata_generic sr_mod isofs vfat
  nls_cp437 nls_ascii nls_utf8 nls_iso8859-1 button evdev"
# Runtime packages (inside the guest), the kernel is added below.
GUEST_PKGS="busybox-static dropbear-bin libc6 libcrypt1 libtomcrypt1 libtommath1 libgmp10 zlib1g
  openssh-client openssh-sftp-server"

# ---------------------------------------------------------------------------------------------------------
# 1. Host tools
# ---------------------------------------------------------------------------------------------------------
need_host_tools() {
  local missing=() t pkg
  # command-or-path  debian-package
  local tools=(
    "grub-mkrescue grub-common" "/usr/lib/grub/i386-pc/boot_hybrid.img grub-pc-bin"
    "/usr/lib/grub/x86_64-efi/linux.mod grub-efi-amd64-bin" "xorriso xorriso" "mformat mtools"
    "cpio cpio" "gzip gzip" "faketime faketime" "qemu-img qemu-utils" "mke2fs e2fsprogs"
    "ssh-keygen openssh-client" "dpkg-deb dpkg" "apt-get apt" "sha256sum coreutils"
  )
  for t in "${tools[@]}"; do
    pkg=${t#* }; t=${t%% *}
    if [[ $t == /* ]]; then [ -e "$t" ] && continue; else command -v "$t" >/dev/null 2>&1 && continue; fi
    # mke2fs lives in /sbin, which is not on every user's PATH
    [ -x "/sbin/$t" ] || [ -x "/usr/sbin/$t" ] && continue
    missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "missing host packages: ${missing[*]}; install them as root: apt-get install ${missing[*]}"
    sudo="sudo"
  fi
  log "installing host packages: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
}
need_host_tools
export PATH=$PATH:/usr/sbin:/sbin

# ---------------------------------------------------------------------------------------------------------
# 2. Debian packages (reuse what is in DEBS, download the rest)
# ---------------------------------------------------------------------------------------------------------
mkdir -p "$DEBS"
newest_deb() { # newest cached .deb of package $1, or nothing
  local f best="" bestv="" v
  for f in "$DEBS/$1"_*.deb; do
    [ -e "$f" ] || continue
    v=$(dpkg-deb -f "$f" Version)
    if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$bestv"; then best=$f; bestv=$v; fi
  done
  printf '%s' "$best"
}
if [ -z "${KVER:-}" ]; then
  k=$(cd "$DEBS" && ls linux-image-*-cloud-amd64_*.deb 2>/dev/null | sort -V | tail -n1 || true)
  if [ -n "$k" ]; then
    KVER=${k#linux-image-}; KVER=${KVER%%_*}
  else
    KVER=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: linux-image-\(.*-cloud-amd64\)$/\1/p' | head -n1)
    if [ -z "$KVER" ]; then
      log "apt does not know linux-image-cloud-amd64 yet, running apt-get update"
      sudo=""; [ "$(id -u)" != 0 ] && sudo=sudo
      $sudo apt-get update -q
      KVER=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/^ *Depends: linux-image-\(.*-cloud-amd64\)$/\1/p' | head -n1)
    fi
    [ -n "$KVER" ] || die "cannot find the cloud kernel: check that the Debian archive is in /etc/apt/sources.list"
  fi
fi
PKGS="linux-image-$KVER $GUEST_PKGS"
declare -A DEB
missing=()
for p in $PKGS; do [ -n "$(newest_deb "$p")" ] || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "downloading ${missing[*]}"
  download() { (cd "$DEBS" && apt-get download -q "$@" 2>&1 | { grep -v '^W: Download is performed unsandboxed' >&2 || true; }); }
  if ! download "${missing[@]}"; then
    log "apt-get download failed, running apt-get update and retrying"
    sudo=""; [ "$(id -u)" != 0 ] && sudo=sudo
    $sudo apt-get update -q
    download "${missing[@]}" || die "apt-get download failed: check the network and /etc/apt/sources.list"
  fi
fi
for p in $PKGS; do
  f=$(newest_deb "$p")
  [ -n "$f" ] || die "apt-get download $p left no $DEBS/${p}_*.deb: check the network and /etc/apt/sources.list"
  DEB[$p]=$f
done

# ---------------------------------------------------------------------------------------------------------
# 3. Up to date?  Inputs: this directory's build files and the exact .debs.
# ---------------------------------------------------------------------------------------------------------
inputs_hash() {
  (
    cd "$HERE"
    find build.sh overlay grub -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    find overlay -type f -perm -u+x | LC_ALL=C sort
    for p in $PKGS; do printf '%s %s\n' "$p" "$(sha256sum < "${DEB[$p]}" | cut -d' ' -f1)"; done
  ) | sha256sum | cut -d' ' -f1
}
HASH=$(inputs_hash)
OUTPUTS="testguest.iso testguest.qcow2 id_ed25519 id_ed25519.pub cidata.iso cidata/user-data seed/authorized_keys
  packages.txt SHA256SUMS"
uptodate=1
for f in $OUTPUTS; do [ -e "$OUT/$f" ] || uptodate=0; done
if [ "$uptodate" = 1 ] && [ -z "${FORCE:-}" ] && [ "$(cat "$OUT/.inputs" 2>/dev/null)" = "$HASH" ] &&
   (cd "$OUT" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1); then
  log "up to date: $OUT"
  exit 0
fi

# ---------------------------------------------------------------------------------------------------------
# 4. Unpack
# ---------------------------------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/testguest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
X=$WORK/x; R=$WORK/rootfs
mkdir -p "$X" "$R"
log "building $OUT from $(echo $PKGS | wc -w) packages (kernel $KVER)"
for p in $PKGS; do dpkg-deb -x "${DEB[$p]}" "$X"; done

# ---------------------------------------------------------------------------------------------------------
# 5. Root filesystem (the initramfs)
# ---------------------------------------------------------------------------------------------------------
# Layout: sbin -> bin and usr/sbin -> bin, so every PATH dropbear may set finds every command.
mkdir -p "$R"/{bin,usr/bin,usr/lib,lib/x86_64-linux-gnu,lib64,dev,proc,sys,run,tmp,root,home/packer,mnt,var/log}
mkdir -p "$R"/etc/dropbear
ln -s bin "$R/sbin"; ln -s bin "$R/usr/sbin"; ln -s ../run "$R/var/run"
chmod 1777 "$R/tmp"; chmod 700 "$R/root"

install -m 755 "$X/bin/busybox" "$R/bin/busybox"
"$X/bin/busybox" --list-full | while read -r a; do
  [ "$a" = bin/busybox ] || [ -e "$R/$a" ] || [ -L "$R/$a" ] || ln -s /bin/busybox "$R/$a"
done
ln -s /bin/busybox "$R/init"
install -m 755 "$X/usr/sbin/dropbear" "$R/usr/bin/dropbear"
install -m 755 "$X/usr/bin/scp" "$R/usr/bin/scp"
install -m 755 "$X/usr/lib/openssh/sftp-server" "$R/usr/lib/sftp-server"   # where Debian's dropbear looks
# sanity: the path dropbear was built with
grep -aq /usr/lib/sftp-server "$R/usr/bin/dropbear" || die "dropbear no longer looks for /usr/lib/sftp-server"

# Shared libraries: resolve with the packaged ld.so; every result must come from the unpacked packages
# (ld.so silently falls back to the host's /lib otherwise).
LDSO=$X/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
install -m 755 "$LDSO" "$R/lib64/ld-linux-x86-64.so.2"
LIBPATH=$X/lib/x86_64-linux-gnu:$X/usr/lib/x86_64-linux-gnu
for bin in usr/bin/dropbear usr/bin/scp usr/lib/sftp-server; do
  "$LDSO" --library-path "$LIBPATH" --list "$R/$bin" | while read -r name arrow path _; do
    [ "$arrow" = "=>" ] || continue
    case $name in ld-linux-x86-64.so.2 | /lib64/*) continue ;; esac
    case $path in "$X"/*) ;; *) die "$bin needs $name, which resolved to $path outside the packages: add its package to GUEST_PKGS" ;; esac
    [ -e "$R/lib/x86_64-linux-gnu/$name" ] || install -m 644 "$(readlink -f "$path")" "$R/lib/x86_64-linux-gnu/$name"
  done
done

# Kernel modules: BOOT_MODS plus their dependencies, in load order, and all of fs/nls.
MODDIR=$X/lib/modules/$KVER
[ -d "$MODDIR" ] || die "no modules for $KVER in linux-image-$KVER"
declare -A MODPATH
while IFS= read -r f; do
  n=${f##*/}; n=${n%.ko}; MODPATH[${n//-/_}]=${f#"$MODDIR"/}
done < <(cd "$MODDIR" && find "$MODDIR/kernel" -name '*.ko' | LC_ALL=C sort)
declare -A SEEN
LOAD_ORDER=()
add_mod() {
  local m=${1//-/_} d deps
  [ -n "${SEEN[$m]:-}" ] && return 0
  SEEN[$m]=1
  if [ -z "${MODPATH[$m]:-}" ]; then
    grep -q "/$1.ko\$" "$MODDIR/modules.builtin" 2>/dev/null && return 0
    grep -q "/${m}.ko\$" "$MODDIR/modules.builtin" 2>/dev/null && return 0
    die "kernel module $1 is neither in linux-image-$KVER nor built in"
  fi
  deps=$(readelf -p .modinfo "$MODDIR/${MODPATH[$m]}" | sed -n 's/.*\]  depends=//p' | tr ',' ' ')
  for d in $deps; do add_mod "$d"; done
  LOAD_ORDER+=("${MODPATH[$m]}")
}
for m in $BOOT_MODS; do add_mod "$m"; done
RMOD=$R/lib/modules/$KVER
for f in "${LOAD_ORDER[@]}" $(cd "$MODDIR" && find kernel/fs/nls -name '*.ko' | LC_ALL=C sort); do
  install -D -m 644 "$MODDIR/$f" "$RMOD/$f"
done
cp "$MODDIR/modules.builtin" "$MODDIR/modules.order" "$RMOD/"
printf '%s\n' "${LOAD_ORDER[@]}" > "$R/etc/modules.load"
"$X/bin/busybox" depmod -b "$R" "$KVER"
printf '%s\n' "$KVER" > "$R/etc/kernel-release"

# Overlay (scripts, config), users and the fixed password hash.
cp -a "$HERE/overlay/." "$R/"
HASHED=$("$X/bin/busybox" mkpasswd -m sha512 -S "$SALT" packer)
cat > "$R/etc/shadow" <<EOF
root:$HASHED:19675:0:99999:7:::
packer:$HASHED:19675:0:99999:7:::
EOF
chmod 600 "$R/etc/shadow"
{
  printf '%s %s\n' "$KVER" "$(dpkg-deb -f "${DEB[linux-image-$KVER]}" Version)"
  for p in $GUEST_PKGS; do printf '%s %s\n' "$p" "$(dpkg-deb -f "${DEB[$p]}" Version)"; done
} > "$R/etc/testguest-packages"

# Normalise metadata: no dependency on umask, user or checkout time.
chmod -R u+rwX,go+rX,go-w "$R"
chmod 600 "$R/etc/shadow"; chmod 700 "$R/root"; chmod 1777 "$R/tmp"
find "$R" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$WORK/iso/boot/grub"
(cd "$R" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
  cpio --null --create --format=newc --reproducible -R 0:0 --quiet) | gzip -9 -n > "$WORK/iso/boot/initrd.img"
install -m 644 "$X/boot/vmlinuz-$KVER" "$WORK/iso/boot/vmlinuz"

# ---------------------------------------------------------------------------------------------------------
# 6. Images
# ---------------------------------------------------------------------------------------------------------
mkrescue() { # $1 = grub.cfg, $2 = output, rest = extra xorriso arguments
  local cfg=$1 out=$2; shift 2
  install -m 644 "$HERE/grub/$cfg" "$WORK/iso/boot/grub/grub.cfg"
  find "$WORK/iso" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  faketime -f "$FAKE_DATE" grub-mkrescue --locales= --fonts= --themes= -o "$out" "$WORK/iso" -- "$@" >"$WORK/mkrescue.log" 2>&1 ||
    { cat "$WORK/mkrescue.log" >&2; die "grub-mkrescue failed (log above)"; }
}
mkdir -p "$OUT"
mkrescue iso.cfg "$WORK/testguest.iso"

# Disk: the same hybrid image without menu wait, plus an ext2 partition "tgdata" (becomes /dev/vda4).
truncate -s "${DATA_MB}M" "$WORK/data.img"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mke2fs -q -F -t ext2 -L tgdata -U "$DATA_UUID" -m 0 \
  -E "hash_seed=$DATA_UUID,root_owner=0:0" "$WORK/data.img" >/dev/null
mkrescue disk.cfg "$WORK/disk.raw" -append_partition 3 0x83 "$WORK/data.img"
qemu-img convert -q -c -f raw -O qcow2 "$WORK/disk.raw" "$WORK/testguest.qcow2"

# A NoCloud seed CD for the throwaway key (used by testguest-disk.pkr.hcl and the demos).
[ -e "$OUT/id_ed25519" ] && [ -e "$OUT/id_ed25519.pub" ] ||
  { rm -f "$OUT/id_ed25519" "$OUT/id_ed25519.pub"; ssh-keygen -q -t ed25519 -N '' -C testguest -f "$OUT/id_ed25519"; }
# out/cidata/: NoCloud files, out/cidata.iso: them on a CD labelled cidata, out/seed/: an HTTP seed directory.
rm -rf "$OUT/cidata" "$OUT/seed"
mkdir -p "$OUT/cidata" "$OUT/seed"
printf '#cloud-config\npassword: packer\nssh_authorized_keys:\n  - %s\n' "$(cat "$OUT/id_ed25519.pub")" > "$OUT/cidata/user-data"
printf 'instance-id: testguest\nlocal-hostname: testguest-cidata\n' > "$OUT/cidata/meta-data"
cp "$OUT/id_ed25519.pub" "$OUT/seed/authorized_keys"
printf 'testguest-seed-marker\n' > "$OUT/seed/marker"
find "$OUT/cidata" "$OUT/seed" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
xorriso -as mkisofs -quiet -o "$WORK/cidata.iso" -volid cidata -joliet -rock "$OUT/cidata" 2>/dev/null

mv -f "$WORK/testguest.iso" "$WORK/testguest.qcow2" "$WORK/cidata.iso" "$OUT/"
cp "$R/etc/testguest-packages" "$OUT/packages.txt"
(cd "$OUT" && sha256sum testguest.iso testguest.qcow2 > SHA256SUMS)
printf '%s\n' "$HASH" > "$OUT/.inputs"
for f in testguest.iso testguest.qcow2; do
  size=$(stat -c %s "$OUT/$f")
  [ "$size" -lt 40000000 ] || die "$f is $size bytes, over the 40 MB budget"
  log "$f: $size bytes"
done
log "done: $OUT"
