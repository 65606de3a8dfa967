# Fully unattended: the autoinstall powers the VM off when it is done, Packer never logs in
# (communicator "none") and just waits for QEMU to exit.

source "qemu" "unattended" {
  iso_url      = "https://releases.ubuntu.com/24.04/ubuntu-24.04-live-server-amd64.iso"
  iso_checksum = "sha256:7d98ac6a01fc448e42703305d49c0fb04decf3e617cd247e41d8a3fd8bf0d7e3"

  communicator          = "none"
  shutdown_timeout      = "1h"
  http_directory        = "http/ubuntu"
  http_port_min         = 9100
  http_port_max         = 9100
  http_interface        = "lo"
  http_network_protocol = "tcp"

  boot_wait              = "-1s"
  boot_key_interval      = "5ms"
  boot_keygroup_interval = "50ms"
  boot_command = [
    "<wait3s>c<wait>",
    "linux /casper/vmlinuz autoinstall ds='nocloud;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/' ---<enter><wait>",
    "initrd /casper/initrd<enter><wait>",
    "boot<enter>"
  ]

  cpus             = 2
  memory           = 4096
  disk_size        = "100G"
  format           = "raw"
  headless         = true
  output_directory = "output-unattended"
  vm_name          = "ubuntu.img"
}

build {
  sources = ["source.qemu.unattended"]
}
