# A CI runner whose outbound SSH must go through the corporate SOCKS5 proxy.

variable "proxy_password" {
  type      = string
  default   = "changeme"
  sensitive = true
}

source "qemu" "proxied" {
  iso_url      = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
  iso_checksum = "sha512:7931b80edbbffeda1732433eb6941873dac81e0dfe041c6a2f57380fbade63166b6c5a42bd45fb4cb91a6e438bcd223b23192cec8a5d514eaa9445ad02bf4414"
  disk_image   = true
  headless     = true
  cd_files     = ["cidata/user-data", "cidata/meta-data"]
  cd_label     = "cidata"

  ssh_username       = "packer"
  ssh_password       = "packer"
  ssh_proxy_host     = "socks.corp.example.com"
  ssh_proxy_port     = 1080
  ssh_proxy_username = "ci-runner"
  ssh_proxy_password = var.proxy_password
  shutdown_command   = "sudo poweroff"
  output_directory   = "output-proxied"
}

build {
  sources = ["source.qemu.proxied"]

  provisioner "shell" {
    inline = ["echo reached through the proxy"]
  }
}
