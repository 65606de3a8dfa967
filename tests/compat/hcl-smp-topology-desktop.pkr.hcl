# A desktop image whose licence counts CPU sockets: 1 socket, 4 cores, 2 threads; it is watched
# in a local window while it installs.

source "qemu" "desktop" {
  iso_url      = "https://download.fedoraproject.org/pub/fedora/linux/releases/39/Workstation/x86_64/iso/Fedora-Workstation-Live-x86_64-39-1.5.iso"
  iso_checksum = "sha256:c6842ba517cf5deaeb895018c59b07f7cd8bb689847b7866604f2d692cd6137e"

  sockets  = 1
  cores    = 4
  threads  = 2
  memory   = 8192
  vga      = "std"
  headless = false
  display  = "none"

  http_directory   = "http/fedora"
  boot_command     = ["<up><wait>e<wait><down><down><end> inst.ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg<leftCtrlOn>x<leftCtrlOff>"]
  ssh_username     = "root"
  ssh_password     = "packer"
  ssh_timeout      = "2h"
  shutdown_command = "poweroff"
  output_directory = "output-desktop"
}

build {
  sources = ["source.qemu.desktop"]

  provisioner "shell" {
    inline = ["nproc", "lscpu"]
  }
}
