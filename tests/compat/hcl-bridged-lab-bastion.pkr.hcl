# A lab build host whose VMs sit on a Linux bridge (qemu-bridge-helper). The guest gets its
# address from the lab's DHCP; Packer reaches it through the lab's jump host with a key and an
# OpenSSH certificate.

variable "bridge" {
  type    = string
  default = "br0"
}

source "qemu" "lab" {
  iso_url      = "https://download.rockylinux.org/pub/rocky/9/isos/x86_64/Rocky-9-latest-x86_64-boot.iso"
  iso_checksum = "sha256:b3ca31317997dbe44bf14ff32bc69df8ac516826676d3a4e7598d4f916c84b82"

  net_bridge        = var.bridge
  net_device        = "virtio-net-pci"
  http_bind_address = "0.0.0.0"
  http_directory    = "http/rocky"
  boot_command      = ["<tab> inst.text inst.ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg<enter>"]
  memory            = 2048
  headless          = true

  ssh_username                 = "root"
  ssh_password                 = "packer"
  ssh_timeout                  = "1h"
  ssh_bastion_host             = "jump.lab.example.com"
  ssh_bastion_port             = 2222
  ssh_bastion_username         = "jump"
  ssh_bastion_private_key_file = "keys/bastion_ed25519"
  ssh_bastion_certificate_file = "keys/bastion_ed25519-cert.pub"

  shutdown_command = "shutdown -P now"
  output_directory = "output-lab"
}

build {
  sources = ["source.qemu.lab"]

  provisioner "shell" {
    inline = ["ip -4 addr show"]
  }
}
