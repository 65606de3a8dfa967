# Debian 12 (bookworm) installed from the installer ISO with a preseed file, driven by qemu-rs.
#
# The boot command opens the installer's GRUB entry and appends `auto=true priority=critical url=…` so the
# Debian installer fetches http/preseed.cfg from the build's HTTP server; the installer downloads the rest
# from a Debian mirror (the guest needs to reach deb.debian.org), installs onto the disk and reboots into
# the new system, where the build's temporary key (put there by the preseed's late_command) lets Packer in
# as `debian`.
#
#   packer build images/debian-installer/debian-12-preseed.pkr.hcl
#
# Variables: `iso_url`/`iso_checksum` (Debian's netinst ISO and its SHA256SUMS by default), `output_dir`,
# `disk_size`, `efi_boot`, `ssh_timeout` (the whole install happens before SSH answers: 10-20 minutes
# with KVM, about an hour under TCG emulation).

variable "iso_url" {
  type    = string
  default = "https://cdimage.debian.org/cdimage/archive/12.12.0/amd64/iso-cd/debian-12.12.0-amd64-netinst.iso"
}

variable "iso_checksum" {
  type    = string
  default = "file:https://cdimage.debian.org/cdimage/archive/12.12.0/amd64/iso-cd/SHA256SUMS"
}

variable "output_dir" {
  type    = string
  default = "output-debian-12-preseed"
}

variable "disk_size" {
  type    = string
  default = "8G"
}

variable "efi_boot" {
  type    = bool
  default = false
}

variable "ssh_timeout" {
  type    = string
  default = "90m"
}

locals {
  # BIOS: ISOLINUX's `boot:` prompt, the "auto" label (Automated install) with the preseed URL.
  boot_bios = ["<esc><wait>auto url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg console=ttyS0,115200<enter>"]
  # UEFI: GRUB's menu, second entry ("Install"), edited: the preseed URL after `--- quiet`.
  boot_uefi = [
    "<down>e<down><down><end>",
    " auto=true priority=critical url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg console=ttyS0,115200<f10>",
  ]
}

source "qemu-rs" "debian-12-preseed" {
  iso_url          = var.iso_url
  iso_checksum     = var.iso_checksum
  disk_size        = var.disk_size
  format           = "qcow2"
  disk_compression = true
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  efi_boot         = var.efi_boot
  memory           = 1024
  output_directory = var.output_dir
  vm_name          = "debian-12.qcow2"

  # {{ .SSHPublicKey }} in http_content is a qemu-rs extension: the preseed installs the build's key.
  http_content = {
    "/preseed.cfg" = file("${path.root}/http/preseed.cfg")
  }

  boot_wait    = "5s"
  boot_command = var.efi_boot ? local.boot_uefi : local.boot_bios

  ssh_username     = "debian"
  ssh_timeout      = var.ssh_timeout
  shutdown_command = "sudo shutdown -P now"
}

build {
  sources = ["source.qemu-rs.debian-12-preseed"]

  provisioner "qemu-rs-shell" {
    execute_command = "chmod +x {{ .Path }}; sudo -E sh -c '{{ .Vars }} {{ .Path }}'"
    inline = [
      "systemctl is-system-running --wait || true",
      ". /etc/os-release && echo \"installed: $PRETTY_NAME, kernel $(uname -r)\"",
      "rm -f /home/debian/.ssh/authorized_keys",
      "truncate -s 0 /etc/machine-id",
      "apt-get clean",
    ]
  }
}
