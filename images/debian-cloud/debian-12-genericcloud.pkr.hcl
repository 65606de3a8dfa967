# Debian 12 (bookworm) cloud image, customised with qemu-rs.
#
# Starts from Debian's official "genericcloud" qcow2 (or any image with cloud-init's NoCloud data source),
# hands the build's temporary SSH key to cloud-init's default user `debian` through a `cidata` CD, grows the
# disk to `disk_size`, runs the provisioners below with sudo, resets cloud-init and shuts down with
# `sudo shutdown -P now`; the artifact is a compressed qcow2 in `output_dir`.
#
#   packer build images/debian-cloud/debian-12-genericcloud.pkr.hcl
#   packer build -var efi_boot=true -var 'debs=["my-agent_1.0_all.deb"]' -var 'units=["my-agent.service"]' \
#     images/debian-cloud/debian-12-genericcloud.pkr.hcl
#
# Variables: `iso_url`/`iso_checksum` (Debian's image and its SHA512SUMS by default), `output_dir`,
# `disk_size`, `efi_boot` (UEFI instead of BIOS; the image boots both ways), `http_dir` (served to the
# guest while it builds; default `http/` next to this file), `debs` (.deb files of `http_dir` to install),
# `units` (systemd units to enable), `files_dir` (a directory whose content is copied over the guest's `/`;
# default `files/` next to this file, e.g. `files/etc/motd`).

variable "iso_url" {
  type    = string
  default = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
}

variable "iso_checksum" {
  type    = string
  default = "file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"
}

variable "output_dir" {
  type    = string
  default = "output-debian-12"
}

variable "disk_size" {
  type    = string
  default = "4G"
}

variable "efi_boot" {
  type    = bool
  default = false
}

# Empty: the `http` and `files` directories next to this template.
variable "http_dir" {
  type    = string
  default = ""
}

variable "files_dir" {
  type    = string
  default = ""
}

variable "debs" {
  type    = list(string)
  default = []
}

variable "units" {
  type    = list(string)
  default = []
}

locals {
  http_dir  = var.http_dir != "" ? var.http_dir : "${path.root}/http"
  files_dir = var.files_dir != "" ? var.files_dir : "${path.root}/files"
}

source "qemu-rs" "debian-12" {
  iso_url          = var.iso_url
  iso_checksum     = var.iso_checksum
  disk_image       = true
  disk_size        = var.disk_size
  format           = "qcow2"
  disk_compression = true
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  efi_boot         = var.efi_boot
  memory           = 1024
  output_directory = var.output_dir
  vm_name          = "debian-12.qcow2"
  http_directory   = local.http_dir

  # A NoCloud seed: cloud-init installs the build's temporary key for its default user `debian`
  # ({{ .SSHPublicKey }} in cd_content is a qemu-rs extension).
  cd_label = "cidata"
  cd_content = {
    "meta-data" = "instance-id: packer-build\nlocal-hostname: debian-12-build\n"
    "user-data" = "#cloud-config\nssh_authorized_keys:\n  - {{ .SSHPublicKey }}\n"
  }

  ssh_username     = "debian"
  ssh_timeout      = "20m"
  shutdown_command = "sudo shutdown -P now"
}

build {
  sources = ["source.qemu-rs.debian-12"]

  # cloud-init finishes its first boot (users, keys, growpart, apt sources) before anything else runs.
  provisioner "qemu-rs-shell" {
    inline = ["cloud-init status --wait >/dev/null; cloud-init status --long"]
  }

  provisioner "file" {
    source      = "${local.files_dir}/"
    destination = "/tmp/qemu-rs-files"
  }

  provisioner "qemu-rs-shell" {
    execute_command  = "chmod +x {{ .Path }}; sudo -E sh -c '{{ .Vars }} {{ .Path }}'"
    environment_vars = ["DEBS=${join(" ", var.debs)}", "UNITS=${join(" ", var.units)}"]
    inline = [
      "set -eu",
      "cp -r /tmp/qemu-rs-files/. / && rm -rf /tmp/qemu-rs-files",
      "mkdir -p /tmp/qemu-rs-debs",
      "for d in $DEBS; do curl -fsS -o /tmp/qemu-rs-debs/$d http://$PACKER_HTTP_ADDR/$d; done",
      "if [ -n \"$DEBS\" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/qemu-rs-debs/*.deb; fi",
      "rm -rf /tmp/qemu-rs-debs",
      "for u in $UNITS; do systemctl enable $u; done",
    ]
  }

  # As image builders do: the next boot is a new instance (cloud-init runs again, new host keys and
  # machine-id), with no trace of this build's seed, logs or key.
  provisioner "qemu-rs-shell" {
    execute_command = "chmod +x {{ .Path }}; sudo -E sh -c '{{ .Vars }} {{ .Path }}'"
    inline = [
      "cloud-init clean --logs --seed",
      "rm -f /home/debian/.ssh/authorized_keys",
      "truncate -s 0 /etc/machine-id",
      "apt-get clean",
    ]
  }
}
