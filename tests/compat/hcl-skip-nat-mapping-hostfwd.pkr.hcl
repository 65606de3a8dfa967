# The user-mode network is declared by hand (an extra forward for a web UI the tests need), so
# Packer must not add its own port forward: it connects to the fixed forwarded SSH port.

source "qemu" "fixed_ports" {
  iso_url      = "https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img"
  iso_checksum = "file:./iso/SHA256SUMS"
  disk_image   = true
  headless     = true
  memory       = 2048

  qemuargs = [
    ["-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:2322-:22,hostfwd=tcp:127.0.0.1:8480-:80"],
    ["-device", "virtio-net,netdev=user.0"],
    ["-smbios", "type=1,serial=ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/"],
  ]
  http_directory = "cidata"

  skip_nat_mapping = true
  ssh_host         = "127.0.0.1"
  ssh_port         = 2322
  ssh_username     = "packer"
  ssh_password     = "packer"
  ssh_timeout      = "15m"
  shutdown_command = "sudo poweroff"
  output_directory = "output-fixed-ports"
}

build {
  sources = ["source.qemu.fixed_ports"]

  provisioner "shell" {
    inline = ["sudo apt-get -y install nginx", "curl -fsS http://127.0.0.1/ >/dev/null"]
  }
}
