# Debian 12 in the bento style: one template, per-release values in a .pkrvars.hcl file, the
# preseed URL built from the boot command variables.

variable "os_name" {
  type = string
}

variable "os_version" {
  type = string
}

variable "iso_url" {
  type = string
}

variable "iso_checksum" {
  type = string
}

variable "boot_command" {
  type = list(string)
}

variable "memory" {
  type    = number
  default = 2048
}

variable "cpus" {
  type    = number
  default = 2
}

variable "headless" {
  type    = bool
  default = true
}

variable "qemu_accelerator" {
  type    = string
  default = "kvm"
}

locals {
  vm_name          = "${var.os_name}-${var.os_version}-x86_64"
  output_directory = "builds/build_${local.vm_name}"
}

source "qemu" "vm" {
  vm_name          = local.vm_name
  iso_url          = var.iso_url
  iso_checksum     = var.iso_checksum
  accelerator      = var.qemu_accelerator
  cpus             = var.cpus
  memory           = var.memory
  headless         = var.headless
  disk_size        = "65536"
  format           = "qcow2"
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  http_directory   = "${path.root}/http"
  boot_wait        = "5s"
  boot_command     = var.boot_command
  output_directory = local.output_directory
  ssh_username     = "packer"
  ssh_password     = "packer"
  ssh_port         = 22
  ssh_timeout      = "60m"
  shutdown_command = "echo 'packer' | sudo -S /sbin/shutdown -hP now"
}

build {
  sources = ["source.qemu.vm"]

  provisioner "shell" {
    environment_vars  = ["HOME_DIR=/home/packer"]
    execute_command   = "echo 'packer' | {{ .Vars }} sudo -S -E sh -eux '{{ .Path }}'"
    expect_disconnect = true
    scripts           = ["${path.root}/scripts/linux/update.sh", "${path.root}/scripts/linux/cleanup.sh"]
  }
}
