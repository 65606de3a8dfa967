# Windows Server 2022 reached over SSH (OpenSSH server enabled by the answer file), so it needs
# no WinRM: the answer file and scripts come from a floppy labelled like the setup expects.

source "qemu" "win2022" {
  iso_url      = "iso/SERVER_EVAL_x64FRE_en-us.iso"
  iso_checksum = "sha256:1179c0016275983c41eea309b4dc130c83078143ce3bdcbb4745a2fc072ff74a"

  accelerator    = "kvm"
  cpus           = 2
  memory         = 4096
  disk_size      = "61440"
  disk_interface = "ide"
  net_device     = "e1000"
  headless       = true

  floppy_files = [
    "floppy/windows/Autounattend.xml",
    "floppy/windows/scripts/*.ps1",
  ]
  floppy_label = "WINSETUP"

  boot_wait    = "2s"
  boot_command = ["<enter>"]

  communicator     = "ssh"
  ssh_username     = "Administrator"
  ssh_password     = "packer"
  ssh_timeout      = "4h"
  ssh_pty          = false
  shutdown_command = "shutdown /s /t 10 /f /d p:4:1 /c \"Packer Shutdown\""
  shutdown_timeout = "20m"
  output_directory = "output-win2022"
  vm_name          = "win2022.qcow2"
}

build {
  sources = ["source.qemu.win2022"]

  provisioner "powershell" {
    inline = ["Get-Service sshd"]
  }
}
