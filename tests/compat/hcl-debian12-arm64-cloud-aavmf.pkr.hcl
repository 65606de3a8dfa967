# Debian 12 arm64 generic cloud image, emulated with qemu-system-aarch64 on the virt machine and
# booted with the AAVMF UEFI firmware; the NoCloud seed goes on a virtio-scsi CD.

variable "aavmf_dir" {
  type    = string
  default = "/usr/share/AAVMF"
}

source "qemu" "debian_arm64" {
  iso_url      = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-arm64.qcow2"
  iso_checksum = "sha512:7931b80edbbffeda1732433eb6941873dac81e0dfe041c6a2f57380fbade63166b6c5a42bd45fb4cb91a6e438bcd223b23192cec8a5d514eaa9445ad02bf4414"
  disk_image   = true
  disk_size    = "6G"

  qemu_binary       = "qemu-system-aarch64"
  machine_type      = "virt"
  cpu_model         = "cortex-a72"
  accelerator       = "tcg"
  cpus              = 2
  memory            = 2048
  efi_boot          = true
  efi_firmware_code = "${var.aavmf_dir}/AAVMF_CODE.fd"
  efi_firmware_vars = "${var.aavmf_dir}/AAVMF_VARS.fd"
  efi_drop_efivars  = true
  cdrom_interface   = "virtio-scsi"
  net_device        = "virtio-net-pci"
  headless          = true
  qemuargs = [
    ["-device", "virtio-rng-pci"],
    ["-device", "virtio-net-pci,netdev=user.0"],
  ]

  cd_label = "cidata"
  cd_files = ["cidata/user-data", "cidata/meta-data"]

  output_directory = "output-debian-12-arm64"
  vm_name          = "debian-12-arm64.qcow2"
  ssh_username     = "packer"
  ssh_password     = "packer"
  ssh_timeout      = "30m"
  shutdown_command = "sudo systemctl poweroff"
}

build {
  sources = ["source.qemu.debian_arm64"]

  provisioner "shell" {
    inline = ["uname -m", "sudo apt-get update"]
  }
}
