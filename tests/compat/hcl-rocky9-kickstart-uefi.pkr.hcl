# Rocky Linux 9 installed with a kickstart served from memory (http_content), booted with UEFI
# on a q35 machine.

variable "rocky_version" {
  type    = string
  default = "9.3"
}

variable "iso_checksum" {
  type    = string
  default = "sha256:b3ca31317997dbe44bf14ff32bc69df8ac516826676d3a4e7598d4f916c84b82"
}

variable "root_password" {
  type      = string
  default   = "packer"
  sensitive = true
}

locals {
  iso_url = "https://download.rockylinux.org/pub/rocky/${var.rocky_version}/isos/x86_64/Rocky-${var.rocky_version}-x86_64-boot.iso"
  vm_name = "rocky-${var.rocky_version}-uefi"
}

source "qemu" "rocky9" {
  iso_url          = local.iso_url
  iso_checksum     = var.iso_checksum
  output_directory = "output-${local.vm_name}"
  vm_name          = "${local.vm_name}.qcow2"

  machine_type      = "q35"
  cpu_model         = "host"
  accelerator       = "kvm"
  cpus              = 2
  memory            = 2048
  disk_size         = "20G"
  disk_interface    = "sata"
  efi_boot          = true
  efi_firmware_code = "/usr/share/OVMF/OVMF_CODE_4M.fd"
  efi_firmware_vars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
  headless          = true

  http_content = {
    "/ks.cfg" = file("http/rocky/ks.cfg")
  }
  boot_wait = "5s"
  boot_command = [
    "e<wait>",
    "<down><down><end><bs><bs><bs><bs><bs>",
    "inst.text inst.ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg",
    "<leftCtrlOn>x<leftCtrlOff>"
  ]

  ssh_username     = "root"
  ssh_password     = var.root_password
  ssh_timeout      = "1h"
  shutdown_command = "/sbin/shutdown -hP now"
}

build {
  sources = ["source.qemu.rocky9"]

  provisioner "shell" {
    inline = [
      "dnf -y install cloud-init cloud-utils-growpart",
      "systemctl enable cloud-init"
    ]
  }

  provisioner "shell" {
    scripts          = ["scripts/linux/cleanup.sh"]
    environment_vars = ["ROCKY_VERSION=${var.rocky_version}"]
  }
}
