# Rocky Linux 9 from the Rocky Enterprise Software Foundation's GenericCloud image, customised with qemu-rs.
#
#   packer build images/rocky-9-genericcloud/rocky-9-genericcloud.pkr.hcl
#
# The image boots from its own disk (disk_image = true); cloud-init reads the NoCloud seed on the
# "cidata" CD made from cd_content, which gives the default user "rocky" the build password.
# The last provisioner locks that password again and resets cloud-init, so the artifact starts
# fresh with the user's own seed. See README.md next to this file.

variable "iso_url" {
  type        = string
  default     = "https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2"
  description = "Rocky Linux 9 GenericCloud Base qcow2, the newest 9.x point release (the name stays, the content moves)."
}

variable "iso_checksum" {
  type        = string
  default     = "file:https://dl.rockylinux.org/pub/rocky/9/images/x86_64/CHECKSUM"
  description = "The images directory's CHECKSUM file (BSD style); the entry for the image's file name is used."
}

variable "output_dir" {
  type    = string
  default = "output-rocky-9-genericcloud"
}

variable "vm_name" {
  type    = string
  default = "rocky-9-genericcloud.qcow2"
}

variable "disk_size" {
  type        = string
  default     = "20G"
  description = "The image (10 GiB virtual) is grown to this; cloud-init's growpart enlarges the root filesystem at boot."
}

variable "memory" {
  type    = number
  default = 2048
}

variable "cpus" {
  type    = number
  default = 2
}

variable "ssh_username" {
  type        = string
  default     = "rocky"
  description = "cloud-init's default user of Rocky's cloud images."
}

variable "ssh_password" {
  type        = string
  default     = "packer"
  sensitive   = true
  description = "Set by the seed for the build only; locked again by the last provisioner."
}

variable "packages" {
  type        = list(string)
  default     = ["qemu-guest-agent"]
  description = "Packages installed into the image (needs the guest to reach Rocky's mirrors)."
}

variable "cpu_model" {
  type        = string
  default     = "max"
  description = "Rocky 9 needs an x86-64-v2 CPU; QEMU's default model is not one. \"max\" works with KVM and TCG; \"host\" with KVM only."
}

locals {
  # NoCloud user-data: the default user gets the build password, and SSH accepts it.
  user_data = <<-EOT
    #cloud-config
    password: ${var.ssh_password}
    chpasswd:
      expire: false
    ssh_pwauth: true
  EOT
}

source "qemu-rs" "rocky" {
  iso_url      = var.iso_url
  iso_checksum = var.iso_checksum
  disk_image   = true
  disk_size    = var.disk_size
  format       = "qcow2"

  disk_compression = true
  output_directory = var.output_dir
  vm_name          = var.vm_name
  memory           = var.memory
  cpus             = var.cpus
  cpu_model        = var.cpu_model

  cd_label = "cidata"
  cd_content = {
    "meta-data" = "instance-id: packer-rocky-9\n"
    "user-data" = local.user_data
  }

  ssh_username     = var.ssh_username
  ssh_password     = var.ssh_password
  ssh_timeout      = "20m"
  shutdown_command = "sudo shutdown -P now"
}

build {
  sources = ["source.qemu-rs.rocky"]

  # Wait until cloud-init is done, then install.
  provisioner "qemu-rs-shell" {
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    inline = [
      "cloud-init status --wait || true",
      length(var.packages) > 0 ? "dnf install -y ${join(" ", var.packages)}" : "true",
    ]
  }

  # Clean up as image builders do: no build password, no password SSH, cloud-init reset, so the
  # artifact runs cloud-init again on its first boot with the user's seed.
  provisioner "qemu-rs-shell" {
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    inline = [
      "dnf clean all",
      "passwd -l ${var.ssh_username}",
      "rm -f /etc/ssh/sshd_config.d/50-cloud-init.conf",
      "cloud-init clean --logs --seed",
      "truncate -s 0 /etc/machine-id",
      "sync",
    ]
  }
}
