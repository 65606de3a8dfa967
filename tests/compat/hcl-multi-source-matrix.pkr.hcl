# One source definition, three builds: the build block re-uses the source under other names and
# the provisioners pick their builds with only/except.

variable "iso_url" {
  type    = string
  default = "https://cdimage.debian.org/cdimage/release/current/amd64/iso-cd/debian-12.5.0-amd64-netinst.iso"
}

locals {
  common_boot = ["<esc><wait>auto preseed/url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg<enter>"]
}

source "qemu" "base" {
  iso_url          = var.iso_url
  iso_checksum     = "sha256:e811ccb363b7eea1b8ebc856707b258cadfbba88142bc56e3053b79372400402"
  http_directory   = "http/debian"
  boot_command     = local.common_boot
  headless         = true
  memory           = 1024
  host_port_min    = 3000
  host_port_max    = 3099
  ssh_username     = "packer"
  ssh_password     = "packer"
  ssh_timeout      = "45m"
  shutdown_command = "echo packer | sudo -S poweroff"
}

source "qemu" "big" {
  iso_url          = var.iso_url
  iso_checksum     = "sha256:e811ccb363b7eea1b8ebc856707b258cadfbba88142bc56e3053b79372400402"
  http_directory   = "http/debian"
  boot_command     = local.common_boot
  headless         = true
  memory           = 4096
  cpus             = 4
  disk_size        = "100G"
  ssh_username     = "packer"
  ssh_password     = "packer"
  ssh_timeout      = "45m"
  shutdown_command = "echo packer | sudo -S poweroff"
  output_directory = "output-big"
}

build {
  name = "matrix"

  source "source.qemu.base" {
    name = "minimal"
  }

  source "source.qemu.base" {
    name = "docker-host"
  }

  sources = ["source.qemu.big"]

  provisioner "shell" {
    inline = ["echo common to every build"]
  }

  provisioner "shell" {
    only   = ["qemu.docker-host"]
    inline = ["sudo apt-get -y install docker.io"]
  }

  provisioner "shell" {
    except  = ["qemu.minimal"]
    scripts = ["scripts/linux/update.sh"]
  }
}
