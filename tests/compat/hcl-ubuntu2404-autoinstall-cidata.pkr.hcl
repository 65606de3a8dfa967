# Ubuntu 24.04 live-server autoinstall with the NoCloud seed on a second CD (cd_content +
# cd_label = "cidata") and the GRUB edit split into described boot steps.

variable "ubuntu_iso" {
  type    = string
  default = "https://releases.ubuntu.com/24.04/ubuntu-24.04-live-server-amd64.iso"
}

source "qemu" "noble" {
  iso_url          = var.ubuntu_iso
  iso_checksum     = "sha256:7d98ac6a01fc448e42703305d49c0fb04decf3e617cd247e41d8a3fd8bf0d7e3"
  output_directory = "output-noble"
  vm_name          = "ubuntu-24.04.qcow2"
  disk_size        = "25G"
  memory           = 4096
  cpus             = 2
  headless         = true

  cd_label = "cidata"
  cd_content = {
    "meta-data" = ""
    "user-data" = file("http/ubuntu/user-data")
  }

  boot_wait = "5s"
  boot_steps = [
    ["c<wait>", "open the GRUB command line"],
    ["linux /casper/vmlinuz --- autoinstall ds=nocloud<enter><wait>", "kernel with autoinstall"],
    ["initrd /casper/initrd<enter><wait>", "initrd"],
    ["boot<enter>", "boot the installer"]
  ]

  ssh_username     = "packer"
  ssh_password     = "packer"
  ssh_timeout      = "40m"
  shutdown_command = "echo packer | sudo -S shutdown -P now"
}

build {
  sources = ["source.qemu.noble"]

  provisioner "shell" {
    execute_command = "echo 'packer' | sudo -S sh -c '{{ .Vars }} {{ .Path }}'"
    scripts         = ["scripts/linux/update.sh", "scripts/linux/cloud-init-clean.sh"]
  }
}
