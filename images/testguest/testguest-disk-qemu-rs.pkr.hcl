# The qemu-rs twin of testguest-disk.pkr.hcl: the same build with `source "qemu-rs"` (the plugin from this
# repository) instead of Packer's built-in `qemu`. The only other difference: the serial console goes to
# `serial_log` (a qemu-rs option) instead of a `-serial` entry in qemuargs, and no `accelerator`: qemu-rs's
# default (KVM when a probe proves it runs a guest, else TCG with a warning; the probe runs beside the other
# steps and its verdict is remembered per host boot). `make demo` and the benchmark use it.
#
#   make install && packer build -var guest_dir=$PWD/images/testguest/out images/testguest/testguest-disk-qemu-rs.pkr.hcl

variable "guest_dir" {
  type        = string
  description = "Directory with the built test guest (images/testguest/out)."
  default     = "images/testguest/out"
}

variable "output_dir" {
  type        = string
  description = "Packer output directory; must not exist yet."
  default     = "output-testguest-disk-qemu-rs"
}

variable "serial_log" {
  type        = string
  description = "File that receives the guest's serial console (empty: <output_dir>/serial.log)."
  default     = ""
}

source "qemu-rs" "testguest-disk" {
  iso_url          = "${var.guest_dir}/testguest.qcow2"
  iso_checksum     = "none"
  disk_image       = true
  output_directory = var.output_dir
  vm_name          = "testguest-disk.qcow2"
  format           = "qcow2"
  disk_size        = "128M"
  disk_interface   = "virtio"
  disk_compression = true
  net_device       = "virtio-net"
  machine_type     = "pc"
  memory           = 512
  headless         = true
  cd_files         = ["${var.guest_dir}/cidata/user-data", "${var.guest_dir}/cidata/meta-data"]
  cd_label         = "cidata"
  boot_wait        = "-1s"
  serial_log       = var.serial_log

  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = "${var.guest_dir}/id_ed25519"
  ssh_timeout          = "5m"
  shutdown_command     = "poweroff"
}

build {
  sources = ["source.qemu-rs.testguest-disk"]

  provisioner "shell" {
    inline = [
      "case \"$(cat /run/testguest/source)\" in cidata:*) ;; *) echo \"not configured by cidata\"; exit 1;; esac",
      "mkdir -p /mnt/tgdata",
      "mount \"$(findfs LABEL=tgdata)\" /mnt/tgdata",
      "echo TESTGUEST-PROVISIONED > /mnt/tgdata/provisioned.txt",
      "dd if=/dev/urandom of=/mnt/tgdata/provisioned.bin bs=1M count=20 2>/dev/null",
      "umount /mnt/tgdata",
      "sync",
    ]
  }
}
