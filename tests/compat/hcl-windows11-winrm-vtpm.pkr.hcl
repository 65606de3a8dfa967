# Windows 11: UEFI with the Microsoft-enrolled OVMF, a TPM 2.0 (swtpm), the answer file and
# drivers on a floppy, provisioned over WinRM. Expected to FAIL with qemu-rs (no WinRM).

variable "iso_url" {
  type    = string
  default = "iso/Win11_23H2_English_x64v2.iso"
}

variable "winrm_password" {
  type      = string
  default   = "packer"
  sensitive = true
}

source "qemu" "win11" {
  iso_url      = var.iso_url
  iso_checksum = "sha256:0471986f7245bcad8ff904876ca72e1e4900c654a2e254e26a4332aeb6c50b98"

  machine_type      = "q35"
  accelerator       = "kvm"
  cpu_model         = "host"
  cpus              = 4
  memory            = 8192
  disk_size         = "80G"
  disk_interface    = "virtio"
  efi_boot          = true
  efi_firmware_code = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
  efi_firmware_vars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
  vtpm              = true
  tpm_device_type   = "tpm-tis"
  headless          = true

  floppy_dirs = ["floppy/drivers"]
  floppy_content = {
    "Autounattend.xml" = file("floppy/windows/Autounattend.xml")
  }

  boot_wait    = "3s"
  boot_command = ["<spacebar><wait><spacebar>"]

  communicator   = "winrm"
  winrm_username = "Administrator"
  winrm_password = var.winrm_password
  winrm_host     = "127.0.0.1"
  winrm_timeout  = "6h"
  winrm_use_ssl  = true
  winrm_insecure = true
  winrm_no_proxy = true

  shutdown_command = "shutdown /s /t 5 /f /d p:4:1 /c \"Packer Shutdown\""
  shutdown_timeout = "30m"
  output_directory = "output-win11"
  vm_name          = "win11.qcow2"
}

build {
  sources = ["source.qemu.win11"]

  provisioner "powershell" {
    scripts = ["scripts/windows/provision.ps1"]
  }
}
