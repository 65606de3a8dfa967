# A build on a shared build host where people watch installs: VNC listens on all interfaces in a
# fixed port range and requires a password; the VM has a virtio GPU.

variable "vnc_password" {
  type      = string
  default   = "s3cret!"
  sensitive = true
}

source "qemu" "debian_watched" {
  iso_url      = "https://cdimage.debian.org/cdimage/release/current/amd64/iso-cd/debian-12.5.0-amd64-netinst.iso"
  iso_checksum = "sha256:e811ccb363b7eea1b8ebc856707b258cadfbba88142bc56e3053b79372400402"

  vnc_bind_address = "0.0.0.0"
  vnc_port_min     = 5950
  vnc_port_max     = 5960
  vnc_use_password = true
  vnc_password     = var.vnc_password
  vga              = "virtio"
  headless         = true

  memory         = 1024
  http_directory = "http/debian"
  boot_command   = ["<esc><wait>auto preseed/url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg<enter>"]

  ssh_username     = "packer"
  ssh_password     = "packer"
  ssh_timeout      = "45m"
  shutdown_command = "echo packer | sudo -S poweroff"
  output_directory = "output-debian-watched"
}

build {
  sources = ["source.qemu.debian_watched"]

  provisioner "shell" {
    inline = ["echo built on a shared host"]
  }
}
