# Ubuntu cloud image customised in place: the qcow2 is copied and grown, a NoCloud seed built
# from variables goes on a CD, SSH uses a key pair from the repository. Values come from
# hcl-ubuntu-cloudimg-locals.pkrvars.hcl.

variable "release" {
  type = string
}

variable "image_name" {
  type = string
}

variable "disk_size" {
  type    = string
  default = "8G"
}

variable "ssh_public_key" {
  type    = string
  default = ""
}

variable "ssh_private_key_file" {
  type    = string
  default = "keys/packer_ed25519"
}

locals {
  build_stamp = formatdate("YYYYMMDD-hhmm", timestamp())
  user_data   = <<-EOT
    #cloud-config
    users:
      - name: packer
        sudo: "ALL=(ALL) NOPASSWD:ALL"
        ssh_authorized_keys:
          - ${var.ssh_public_key != "" ? var.ssh_public_key : file("keys/packer_ed25519.pub")}
  EOT
}

source "qemu" "cloudimg" {
  iso_url          = "https://cloud-images.ubuntu.com/${var.release}/current/${var.image_name}"
  iso_checksum     = "file:./iso/SHA256SUMS"
  disk_image       = true
  use_backing_file = false
  disk_size        = var.disk_size
  format           = "qcow2"
  skip_compaction  = false
  disk_compression = true
  output_directory = "output-${var.release}-${local.build_stamp}"
  vm_name          = "ubuntu-${var.release}.qcow2"
  memory           = 2048
  headless         = true

  cd_label = "cidata"
  cd_content = {
    "user-data" = local.user_data
    "meta-data" = "instance-id: ${var.release}-${local.build_stamp}\n"
  }

  communicator         = "ssh"
  ssh_username         = "packer"
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "10m"
  shutdown_command     = "sudo shutdown -P now"
}

build {
  name    = "ubuntu-cloud"
  sources = ["source.qemu.cloudimg"]

  provisioner "shell" {
    inline = ["cloud-init status --wait", "sudo cloud-init clean --logs"]
  }
}
