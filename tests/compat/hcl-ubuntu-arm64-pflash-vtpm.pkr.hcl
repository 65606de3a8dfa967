# Ubuntu 22.04 arm64 installer ISO on qemu-system-aarch64: the firmware is loaded as a pflash
# drive (firmware + use_pflash) and the guest gets an emulated TPM on the ARM device model.

source "qemu" "jammy_arm64" {
  iso_url      = "https://cdimage.ubuntu.com/releases/22.04/release/ubuntu-22.04.4-live-server-arm64.iso"
  iso_checksum = "fee918d5cd7d24f75e08f49aaf51661f863710de9e7a103fbedef4573ef78d0e"

  qemu_binary     = "qemu-system-aarch64"
  machine_type    = "virt"
  cpu_model       = "max"
  accelerator     = "tcg"
  firmware        = "/usr/share/AAVMF/AAVMF_CODE.fd"
  use_pflash      = true
  vtpm            = true
  tpm_device_type = "tpm-tis-device"
  cdrom_interface = "virtio"
  disk_interface  = "virtio"
  cpus            = 4
  memory          = 4096
  disk_size       = "20G"
  headless        = true

  http_directory = "http/ubuntu"
  boot_wait      = "10s"
  boot_command = [
    "e<wait><down><down><down><end>",
    " autoinstall 'ds=nocloud;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/'",
    "<f10>"
  ]

  output_directory = "output-jammy-arm64"
  vm_name          = "jammy-arm64"
  ssh_username     = "packer"
  ssh_password     = "packer"
  ssh_timeout      = "2h"
  shutdown_command = "echo packer | sudo -S poweroff"
}

build {
  sources = ["source.qemu.jammy_arm64"]

  provisioner "shell" {
    inline = ["ls /dev/tpm* || true"]
  }
}
