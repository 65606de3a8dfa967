# Alpine Linux 3.24 from Alpine's NoCloud cloud image (BIOS, cloud-init), customised with qemu-rs.
#
#   packer build images/alpine-cloud/alpine-cloud.pkr.hcl
#
# The image boots from its own disk (disk_image = true); cloud-init reads the NoCloud seed on the
# "cidata" CD made from cd_content, which gives the default user "alpine" the build password.
# The last provisioner locks that password again and resets cloud-init, so the artifact starts
# fresh with the user's own seed. See README.md next to this file.

variable "iso_url" {
  type        = string
  default     = "https://dl-cdn.alpinelinux.org/alpine/v3.24/releases/cloud/nocloud_alpine-3.24.1-x86_64-bios-cloudinit-r0.qcow2"
  description = "Alpine's NoCloud cloud image with cloud-init, BIOS boot."
}

variable "iso_checksum" {
  type        = string
  default     = "file:https://dl-cdn.alpinelinux.org/alpine/v3.24/releases/cloud/nocloud_alpine-3.24.1-x86_64-bios-cloudinit-r0.qcow2.sha512"
  description = "The image's own .sha512 file."
}

variable "output_dir" {
  type    = string
  default = "output-alpine-cloud"
}

variable "vm_name" {
  type    = string
  default = "alpine-cloud.qcow2"
}

variable "disk_size" {
  type        = string
  default     = "4G"
  description = "The image (about 1 GiB virtual) is grown to this; cloud-init's growpart enlarges the root filesystem at boot."
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
  default     = "alpine"
  description = "cloud-init's default user of Alpine's cloud images."
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
  description = "Packages installed into the image (needs the guest to reach Alpine's mirrors)."
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

source "qemu-rs" "alpine" {
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

  cd_label = "cidata"
  cd_content = {
    "meta-data" = "instance-id: packer-alpine-cloud\n"
    "user-data" = local.user_data
  }

  ssh_username     = var.ssh_username
  ssh_password     = var.ssh_password
  ssh_timeout      = "20m"
  shutdown_command = "doas poweroff"
}

build {
  sources = ["source.qemu-rs.alpine"]

  # Wait until cloud-init is done, then install. Alpine's cloud images use doas, not sudo.
  provisioner "qemu-rs-shell" {
    execute_command = "chmod +x {{ .Path }}; doas env {{ .Vars }} {{ .Path }}"
    inline = [
      "cloud-init status --wait || true",
      length(var.packages) > 0 ? "apk add --no-cache ${join(" ", var.packages)}" : "true",
    ]
  }

  # Clean up as image builders do: no build password, cloud-init reset, so the artifact runs
  # cloud-init again on its first boot with the user's seed.
  provisioner "qemu-rs-shell" {
    execute_command = "chmod +x {{ .Path }}; doas env {{ .Vars }} {{ .Path }}"
    inline = [
      "passwd -l ${var.ssh_username}",
      "cloud-init clean --logs --seed",
      "sync",
    ]
  }
}
