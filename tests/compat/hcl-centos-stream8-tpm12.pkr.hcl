# CentOS Stream 8 image for a fleet that still attests with TPM 1.2: the build VM gets an
# emulated TPM 1.2 so the image's measured-boot tooling can be set up during provisioning.

source "qemu" "stream8" {
  iso_url      = "https://vault.centos.org/8-stream/isos/x86_64/CentOS-Stream-8-20240201.0-x86_64-boot.iso"
  iso_checksum = "sha256:cbb2ca3855df82d7b38dfafc376657f8c402641aa05217ce94e09ebe9d769f6a"

  vtpm            = true
  use_tpm1        = true
  tpm_device_type = "tpm-tis"
  cpus            = 2
  memory          = 2048
  disk_size       = "20G"
  headless        = true

  http_directory = "http/rocky"
  boot_command   = ["<tab> inst.text inst.ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg<enter><wait>"]
  boot_wait      = "10s"

  ssh_username     = "root"
  ssh_password     = "packer"
  ssh_timeout      = "1h"
  shutdown_command = "shutdown -P now"
  output_directory = "output-stream8"
}

build {
  sources = ["source.qemu.stream8"]

  provisioner "shell" {
    inline = ["dnf -y install tpm-tools trousers", "systemctl enable tcsd"]
  }
}
