# A hardened base image: the guest only accepts OpenSSH user certificates, strong ciphers and
# key exchanges. Packer signs in with the key from ssh-agent plus a certificate, never forwards
# the agent, and opens tunnels so provisioning reaches an internal mirror and a local cache.

source "qemu" "hardened" {
  iso_url      = "https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img"
  iso_checksum = "file:./iso/SHA256SUMS"
  disk_image   = true
  headless     = true
  cd_files     = ["cidata/*"]
  cd_label     = "cidata"

  ssh_username                 = "packer"
  ssh_agent_auth               = true
  ssh_private_key_file         = "keys/packer_ed25519"
  ssh_certificate_file         = "keys/packer_ed25519-cert.pub"
  ssh_disable_agent_forwarding = true
  ssh_ciphers                  = ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr"]
  ssh_key_exchange_algorithms  = ["curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256"]
  ssh_local_tunnels            = ["8443:127.0.0.1:443"]
  ssh_remote_tunnels           = ["3142:127.0.0.1:3142"]
  ssh_keep_alive_interval      = "15s"
  ssh_timeout                  = "10m"
  shutdown_command             = "sudo poweroff"
  output_directory             = "output-hardened"
}

build {
  sources = ["source.qemu.hardened"]

  provisioner "shell" {
    environment_vars = ["http_proxy=http://127.0.0.1:3142"]
    inline           = ["sudo -E apt-get update"]
  }
}
