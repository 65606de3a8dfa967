#!/usr/bin/env bash
# Assembles a Debian 12 installer ISO from Debian's `debian-installer-12-netboot-amd64` package: the
# installer's kernel and initrd (the network installer: it fetches the rest from a Debian mirror) behind
# ISOLINUX (BIOS) and GRUB (UEFI), with the boot prompt and menu of Debian's netinst ISO. It stands in for
# `debian-12.x.y-amd64-netinst.iso`, which cannot be downloaded on a machine that reaches only the package
# mirror. Output: out/debian-12-netboot-amd64.iso and out/SHA256SUMS (no-op when up to date; FORCE=1).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/out}
PKG=debian-installer-12-netboot-amd64
ISO=debian-12-netboot-amd64.iso
log() { printf 'debian-installer: %s\n' "$*" >&2; }
die() { printf 'debian-installer: error: %s\n' "$*" >&2; exit 1; }

for t in grub-mkimage:grub-common xorriso:xorriso mcopy:mtools mkfs.vfat:dosfstools; do
  command -v "${t%%:*}" >/dev/null || die "${t%%:*} is missing: apt-get install ${t#*:}"
done
[ -e /usr/lib/ISOLINUX/isolinux.bin ] || die "ISOLINUX is missing: apt-get install isolinux"
[ -e /usr/lib/syslinux/modules/bios/ldlinux.c32 ] || die "SYSLINUX's modules are missing: apt-get install syslinux-common"
[ -e /usr/lib/grub/x86_64-efi/normal.mod ] || die "GRUB for UEFI is missing: apt-get install grub-efi-amd64-bin"

version=$(apt-cache policy "$PKG" | awk '/Candidate:/{print $2}')
[ -n "$version" ] && [ "$version" != "(none)" ] || die "apt knows no $PKG (is bookworm main in the sources?)"
HASH=$( { cat "$0"; echo "$version"; } | sha256sum | cut -d' ' -f1)
if [ -z "${FORCE:-}" ] && [ -f "$OUT/.inputs" ] && [ "$(cat "$OUT/.inputs")" = "$HASH" ] &&
   (cd "$OUT" && sha256sum --quiet -c SHA256SUMS 2>/dev/null); then
  log "up to date: $OUT/$ISO"
  exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/debian-installer.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log "downloading $PKG $version"
(cd "$WORK" && apt-get download "$PKG=$version" >/dev/null) || die "apt-get download $PKG failed"
dpkg-deb -x "$WORK"/*.deb "$WORK/pkg"
src=$WORK/pkg/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64
mkdir -p "$WORK/iso/install.amd" "$WORK/iso/boot/grub" "$WORK/iso/isolinux" "$WORK/iso/.disk"
cp "$src/linux" "$WORK/iso/install.amd/vmlinuz"
cp "$src/initrd.gz" "$WORK/iso/install.amd/initrd.gz"
echo "Debian GNU/Linux 12 \"Bookworm\" - netboot installer assembled by qemu-rs ($version)" > "$WORK/iso/.disk/info"

# BIOS: ISOLINUX, as on Debian's netinst ISO: the `boot:` prompt takes `install` or `auto …` (the
# "Automated install" label: `auto url=http://…/preseed.cfg` is what BIOS boot commands type).
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$WORK/iso/isolinux/"
cat > "$WORK/iso/isolinux/isolinux.cfg" <<'CFG'
serial 0 115200
prompt 1
timeout 0
default install
label install
  kernel /install.amd/vmlinuz
  append vga=788 initrd=/install.amd/initrd.gz --- quiet
label auto
  kernel /install.amd/vmlinuz
  append auto=true priority=critical vga=788 initrd=/install.amd/initrd.gz --- quiet
CFG

# UEFI: GRUB with the first two entries of Debian's netinst menu (the graphical installer's entry starts
# the text installer here: the package's graphical initrd is left out to keep the ISO small).
cat > "$WORK/iso/boot/grub/grub.cfg" <<'CFG'
set timeout=-1
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
menuentry --hotkey=g 'Graphical install' {
    set background_color=black
    linux    /install.amd/vmlinuz vga=788 --- quiet
    initrd   /install.amd/initrd.gz
}
menuentry --hotkey=i 'Install' {
    set background_color=black
    linux    /install.amd/vmlinuz vga=788 --- quiet
    initrd   /install.amd/initrd.gz
}
CFG
printf 'search --no-floppy --file --set=root /.disk/info\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n' > "$WORK/early.cfg"
grub-mkimage -O x86_64-efi -o "$WORK/BOOTX64.EFI" -c "$WORK/early.cfg" -p /boot/grub \
  iso9660 part_gpt part_msdos fat search search_fs_file normal configfile linux gzio echo serial terminal \
  efi_gop all_video test
truncate -s 8M "$WORK/iso/boot/grub/efi.img"
mkfs.vfat -n EFIBOOT "$WORK/iso/boot/grub/efi.img" >/dev/null
mmd -i "$WORK/iso/boot/grub/efi.img" ::/EFI ::/EFI/BOOT
mcopy -i "$WORK/iso/boot/grub/efi.img" "$WORK/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

xorriso -as mkisofs -quiet -o "$WORK/$ISO" -r -J -V "Debian 12 netboot" \
  -isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin \
  -b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table \
  -eltorito-alt-boot -e boot/grub/efi.img -no-emul-boot -isohybrid-gpt-basdat \
  "$WORK/iso" 2>"$WORK/xorriso.log" || { cat "$WORK/xorriso.log" >&2; die "xorriso failed"; }
mkdir -p "$OUT"
mv -f "$WORK/$ISO" "$OUT/"
(cd "$OUT" && sha256sum "$ISO" > SHA256SUMS)
printf '%s\n' "$HASH" > "$OUT/.inputs"
log "done: $OUT/$ISO ($(stat -c %s "$OUT/$ISO") bytes, installer $version)"
