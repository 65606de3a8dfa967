# A build host next to a fast internal mirror: the ISO is streamed by QEMU straight from the
# mirror (HTTP range requests) instead of being downloaded into the Packer cache first.

source "qemu" "streamed" {
  iso_url        = "https://mirror.internal.example.com/debian-cd/12.5.0/amd64/iso-cd/debian-12.5.0-amd64-netinst.iso"
  iso_checksum   = "none"
  iso_skip_cache = true

  http_directory   = "http/debian"
  boot_command     = ["<esc><wait>auto preseed/url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg<enter>"]
  memory           = 1024
  headless         = true
  ssh_username     = "packer"
  ssh_password     = "packer"
  ssh_timeout      = "45m"
  shutdown_command = "echo packer | sudo -S poweroff"
  output_directory = "output-streamed"
}

build {
  sources = ["source.qemu.streamed"]

  provisioner "shell" {
    inline = ["cat /etc/debian_version"]
  }
}
