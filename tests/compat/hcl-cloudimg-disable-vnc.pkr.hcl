# A cloud image needs no typing: VNC typing is switched off, QEMU's monitor is reachable over
# QMP for debugging, and the key pair for the build is generated on the fly (RSA 2048 for an
# old guest's sshd).

source "qemu" "no_vnc" {
  iso_url          = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
  iso_checksum     = "sha512:7931b80edbbffeda1732433eb6941873dac81e0dfe041c6a2f57380fbade63166b6c5a42bd45fb4cb91a6e438bcd223b23192cec8a5d514eaa9445ad02bf4414"
  disk_image       = true
  skip_resize_disk = true
  headless         = true
  disable_vnc      = true
  qmp_enable       = true
  qmp_socket_path  = "/tmp/qemu-rs-compat-no-vnc.sock"

  http_content = {
    "/meta-data" = "instance-id: no-vnc\n"
    "/user-data" = file("cidata/user-data")
  }
  qemuargs = [
    ["-smbios", "type=1,serial=ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/"],
  ]

  temporary_key_pair_type = "rsa"
  temporary_key_pair_bits = 2048
  ssh_username            = "packer"
  ssh_password            = "packer"
  ssh_timeout             = "15m"
  shutdown_command        = "sudo poweroff"
  output_directory        = "output-no-vnc"
}

build {
  sources = ["source.qemu.no_vnc"]

  provisioner "shell" {
    inline = ["echo ok"]
  }
}
