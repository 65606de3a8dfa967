# Ubuntu 24.04 LTS server installed from the live-server ISO by Subiquity's autoinstall, booted
# with UEFI, customised with qemu-rs.
#
#   packer build images/ubuntu-24.04-autoinstall/ubuntu-24.04-autoinstall.pkr.hcl
#
# The boot command opens GRUB's command line and boots the installer's kernel with
# `autoinstall ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/`: the installer reads
# http/user-data and http/meta-data from the build's HTTP server and installs without questions,
# then reboots into the installed system, where the build logs in as "ubuntu". The last
# provisioner removes the build's access. See README.md next to this file.

variable "iso_url" {
  type        = string
  default     = "https://releases.ubuntu.com/24.04.4/ubuntu-24.04.4-live-server-amd64.iso"
  description = "Ubuntu 24.04.4 live-server ISO (amd64). A newer point release has a new name: change both URLs."
}

variable "iso_checksum" {
  type        = string
  default     = "file:https://releases.ubuntu.com/24.04.4/SHA256SUMS"
  description = "The release's SHA256SUMS file; the entry for the ISO's file name is used."
}

variable "output_dir" {
  type    = string
  default = "output-ubuntu-24.04-autoinstall"
}

variable "vm_name" {
  type    = string
  default = "ubuntu-24.04-autoinstall.qcow2"
}

variable "disk_size" {
  type    = string
  default = "20G"
}

variable "memory" {
  type        = number
  default     = 4096
  description = "The live installer runs from RAM; it needs about 3 GiB."
}

variable "cpus" {
  type    = number
  default = 2
}

variable "ssh_password" {
  type        = string
  default     = "packer"
  sensitive   = true
  description = "Must match the password hash in http/user-data (identity.password)."
}

variable "boot_wait" {
  type        = string
  default     = "10s"
  description = "Until GRUB shows its menu; raise it without KVM."
}

source "qemu-rs" "ubuntu" {
  iso_url      = var.iso_url
  iso_checksum = var.iso_checksum
  disk_size    = var.disk_size
  format       = "qcow2"

  disk_compression = true
  output_directory = var.output_dir
  vm_name          = var.vm_name
  memory           = var.memory
  cpus             = var.cpus
  machine_type     = "q35"

  # UEFI: OVMF from QEMU's firmware descriptors, with a per-build copy of its variables (the
  # installer adds its boot entry there, so the reboot starts the installed system).
  efi_boot = true

  http_directory = "${path.root}/http"
  boot_wait      = var.boot_wait
  boot_command = [
    "c<wait>",
    "linux /casper/vmlinuz autoinstall 'ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/' ---<enter><wait>",
    "initrd /casper/initrd<enter><wait>",
    "boot<enter>",
  ]

  ssh_username = "ubuntu"
  ssh_password = var.ssh_password
  ssh_timeout  = "1h"
  # The live installer runs an SSH server too, which refuses the build's login until the
  # installed system is up: tolerate those failures.
  ssh_handshake_attempts = 200

  # The build's sudoers file goes last, with the shutdown that still needs it.
  shutdown_command = "sudo sh -c 'rm -f /etc/sudoers.d/90-packer && shutdown -P now'"
}

build {
  sources = ["source.qemu-rs.ubuntu"]

  provisioner "qemu-rs-shell" {
    environment_vars = ["DEBIAN_FRONTEND=noninteractive"]
    execute_command  = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    inline = [
      "apt-get update",
      "apt-get install -y qemu-guest-agent cloud-guest-utils",
    ]
  }

  # Remove the build's access and reset cloud-init, so the artifact is set up by the user's seed.
  provisioner "qemu-rs-shell" {
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    inline = [
      "apt-get clean",
      "passwd -l ubuntu",
      "rm -f /etc/ssh/sshd_config.d/50-cloud-init.conf",
      "rm -f /etc/cloud/cloud.cfg.d/99-installer.cfg /etc/cloud/cloud.cfg.d/subiquity-disable-cloudinit-networking.cfg",
      "cloud-init clean --logs --seed",
      "truncate -s 0 /etc/machine-id",
      "sync",
    ]
  }
}
