# Baseline for the benchmark: builds from testguest.qcow2 (disk_image) with Packer's BUILT-IN qemu builder
# (1.6.6). The guest configures itself from a NoCloud CD made by cd_files (out/cidata/: the throwaway key and
# local-hostname). The provisioner writes 20 MB into the tgdata ext2 partition.
#
#   packer build -var guest_dir=$PWD/images/testguest/out images/testguest/testguest-disk.pkr.hcl

variable "guest_dir" {
  type        = string
  description = "Directory with the built test guest (images/testguest/out)."
  default     = "images/testguest/out"
}

variable "output_dir" {
  type        = string
  description = "Packer output directory; must not exist yet."
  default     = "output-testguest-disk"
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

source "qemu" "testguest-disk" {
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
  accelerator      = var.accelerator
  memory           = 512
  headless         = true
  cd_files         = ["${var.guest_dir}/cidata/user-data", "${var.guest_dir}/cidata/meta-data"]
  cd_label         = "cidata"
  boot_wait        = "-1s"
  qemuargs         = [["-serial", "file:${var.serial_log}"]]

  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = "${var.guest_dir}/id_ed25519"
  ssh_timeout          = "5m"
  shutdown_command     = "poweroff"
}

build {
  sources = ["source.qemu.testguest-disk"]

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
