# The qemu-rs twin of testguest-iso.pkr.hcl: the same build with `source "qemu-rs"` (the plugin from this
# repository) instead of Packer's built-in `qemu`. The only other difference: the serial console goes to
# `serial_log` (a qemu-rs option) instead of a `-serial` entry in qemuargs, and no `accelerator`: qemu-rs's
# default (KVM when a probe proves it runs a guest, else TCG with a warning; the probe runs beside the other
# steps and its verdict is remembered per host boot). `make demo` and the benchmark use it.
#
#   make install && packer build -var guest_dir=$PWD/images/testguest/out images/testguest/testguest-iso-qemu-rs.pkr.hcl

variable "guest_dir" {
  type        = string
  description = "Directory with the built test guest (images/testguest/out)."
  default     = "images/testguest/out"
}

variable "output_dir" {
  type        = string
  description = "Packer output directory; must not exist yet."
  default     = "output-testguest-iso-qemu-rs"
}

variable "serial_log" {
  type        = string
  description = "File that receives the guest's serial console (empty: <output_dir>/serial.log)."
  default     = ""
}

source "qemu-rs" "testguest-iso" {
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
  memory           = 512
  headless         = true
  http_directory   = "${var.guest_dir}/seed"
  boot_wait        = "3s"
  boot_command     = ["e<down><down><end> seed=http://{{ .HTTPIP }}:{{ .HTTPPort }}/<f10>"]
  serial_log       = var.serial_log

  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = "${var.guest_dir}/id_ed25519"
  ssh_timeout          = "5m"
  shutdown_command     = "poweroff"
}

build {
  sources = ["source.qemu-rs.testguest-iso"]

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
