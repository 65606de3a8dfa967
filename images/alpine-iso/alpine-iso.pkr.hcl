# Alpine Linux 3.24 installed from the alpine-virt ISO by `setup-alpine -f` with an answer file,
# customised with qemu-rs.
#
#   packer build images/alpine-iso/alpine-iso.pkr.hcl
#
# The boot command logs in on the live system's console, fetches http/answers from the build's
# HTTP server and runs setup-alpine with it (root on LVM, OpenSSH), then gives root the build
# password and allows root to log in over SSH for the build, and reboots into the installed
# system. The provisioners install cloud-init and undo the build's access: the artifact is set up
# by the user's NoCloud seed on its first boot. See README.md next to this file.

variable "iso_url" {
  type        = string
  default     = "https://dl-cdn.alpinelinux.org/alpine/v3.24/releases/x86_64/alpine-virt-3.24.1-x86_64.iso"
  description = "Alpine's virt ISO (a small installer and live system for virtual machines)."
}

variable "iso_checksum" {
  type        = string
  default     = "file:https://dl-cdn.alpinelinux.org/alpine/v3.24/releases/x86_64/alpine-virt-3.24.1-x86_64.iso.sha256"
  description = "The ISO's own .sha256 file."
}

variable "output_dir" {
  type    = string
  default = "output-alpine-iso"
}

variable "vm_name" {
  type    = string
  default = "alpine-iso.qcow2"
}

variable "disk_size" {
  type    = string
  default = "4G"
}

variable "memory" {
  type    = number
  default = 1024
}

variable "cpus" {
  type    = number
  default = 2
}

variable "ssh_password" {
  type        = string
  default     = "packer"
  sensitive   = true
  description = "root's password during the build (typed by the boot command); locked again by the last provisioner."
}

variable "boot_wait" {
  type        = string
  default     = "30s"
  description = "Until the live system shows its login prompt; raise it without KVM."
}

source "qemu-rs" "alpine" {
  iso_url      = var.iso_url
  iso_checksum = var.iso_checksum
  disk_size    = var.disk_size
  format       = "qcow2"

  disk_compression = true
  output_directory = var.output_dir
  vm_name          = var.vm_name
  memory           = var.memory
  cpus             = var.cpus

  http_directory = "${path.root}/http"
  boot_wait      = var.boot_wait
  boot_command = [
    "root<enter><wait5>",
    "ifconfig eth0 up && udhcpc -i eth0<enter><wait10>",
    "wget -qO /tmp/answers http://{{ .HTTPIP }}:{{ .HTTPPort }}/answers<enter><wait5>",
    "ERASE_DISKS=/dev/vda setup-alpine -e -f /tmp/answers",
    " && mount /dev/vg0/lv_root /mnt && mount --bind /dev /mnt/dev",
    " && echo 'root:${var.ssh_password}' | chroot /mnt chpasswd",
    " && sed -i 's/^#*PermitRootLogin .*/PermitRootLogin yes/' /mnt/etc/ssh/sshd_config",
    " && { grep -q '^PermitRootLogin yes' /mnt/etc/ssh/sshd_config || echo 'PermitRootLogin yes' >> /mnt/etc/ssh/sshd_config; }",
    " && umount /mnt/dev /mnt && reboot<enter>",
  ]

  ssh_username     = "root"
  ssh_password     = var.ssh_password
  ssh_timeout      = "30m"
  shutdown_command = "poweroff"
}

build {
  sources = ["source.qemu-rs.alpine"]

  # cloud-init is in the community repository, which setup-alpine leaves commented out.
  provisioner "qemu-rs-shell" {
    inline = [
      "sed -i 's|^#\\(.*/community\\)$|\\1|' /etc/apk/repositories",
      "apk update",
      "apk add --no-cache cloud-init qemu-guest-agent sudo",
      "setup-cloud-init",
      "rc-update add qemu-guest-agent default",
    ]
  }

  # Undo the build's access: no root password, no root SSH login; cloud-init creates the user
  # from the seed on the artifact's first boot.
  provisioner "qemu-rs-shell" {
    inline = [
      "sed -i 's/^PermitRootLogin yes$/#PermitRootLogin prohibit-password/' /etc/ssh/sshd_config",
      "passwd -l root",
      "cloud-init clean --logs",
      "sync",
    ]
  }
}
