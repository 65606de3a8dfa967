# The build host is only reachable from the office through a jump host that asks for a
# password (keyboard-interactive) and also takes the key from ssh-agent.

variable "bastion_password" {
  type      = string
  default   = "jump-password"
  sensitive = true
}

source "qemu" "through_bastion" {
  iso_url      = "https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img"
  iso_checksum = "file:./iso/SHA256SUMS"
  disk_image   = true
  headless     = true
  cd_files     = ["cidata/user-data", "cidata/meta-data"]
  cd_label     = "cidata"

  ssh_username            = "packer"
  ssh_private_key_file    = "keys/packer_ed25519"
  ssh_bastion_host        = "bastion.example.com"
  ssh_bastion_username    = "ops"
  ssh_bastion_password    = var.bastion_password
  ssh_bastion_interactive = true
  ssh_bastion_agent_auth  = true
  shutdown_command        = "sudo poweroff"
  output_directory        = "output-through-bastion"
}

build {
  sources = ["source.qemu.through_bastion"]

  provisioner "shell" {
    inline = ["hostname"]
  }
}
