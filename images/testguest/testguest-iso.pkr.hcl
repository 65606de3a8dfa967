# Baseline for the benchmark: builds from testguest.iso with Packer's BUILT-IN qemu builder (1.6.6).
# The boot command types seed=URL into GRUB's entry editor; the guest then fetches authorized_keys (and
# marker) from Packer's HTTP server, which serves out/seed/. SSH uses the key only, so reaching SSH proves
# that the boot command was typed and the HTTP server was reached.
#
#   packer build -var guest_dir=$PWD/images/testguest/out images/testguest/testguest-iso.pkr.hcl

variable "guest_dir" {
  type        = string
  description = "Directory with the built test guest (images/testguest/out)."
  default     = "images/testguest/out"
}

variable "output_dir" {
  type        = string
  description = "Packer output directory; must not exist yet."
  default     = "output-testguest-iso"
}

variable "serial_log" {
  type        = string
  description = "File that receives the guest's serial console."
  default     = "/dev/null"
}

variable "accelerator" {
  type    = string
  default = "tcg"
}

source "qemu" "testguest-iso" {
  iso_url          = "${var.guest_dir}/testguest.iso"
  iso_checksum     = "none"
  output_directory = var.output_dir
  vm_name          = "testguest-iso.qcow2"
  format           = "qcow2"
  disk_size        = "256M"
  disk_interface   = "virtio"
  disk_compression = true
  net_device       = "virtio-net"
  machine_type     = "pc"
  accelerator      = var.accelerator
  memory           = 512
  headless         = true
  http_directory   = "${var.guest_dir}/seed"
  boot_wait        = "3s"
  boot_command     = ["e<down><down><end> seed=http://{{ .HTTPIP }}:{{ .HTTPPort }}/<f10>"]
  qemuargs         = [["-serial", "file:${var.serial_log}"]]

  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = "${var.guest_dir}/id_ed25519"
  ssh_timeout          = "5m"
  shutdown_command     = "poweroff"
}

build {
  sources = ["source.qemu.testguest-iso"]

  provisioner "shell" {
    inline = [
      "case \"$(cat /run/testguest/source)\" in seed:*) ;; *) echo \"not configured by the seed\"; exit 1;; esac",
      "echo \"marker: $(cat /run/testguest/marker)\"",
      "printf 'TESTGUEST-PROVISIONED\\n' | dd of=/dev/vda bs=512 seek=2048 conv=notrunc 2>/dev/null",
      "dd if=/dev/urandom of=/dev/vda bs=1M count=20 seek=4 conv=notrunc 2>/dev/null",
      "sync",
    ]
  }
}
