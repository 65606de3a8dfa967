# The qemu-rs twin of debian-12.pkr.hcl (the benchmark baseline for a real distribution): the Debian 12
# cloud image of images/debian-cloud (systemd, cloud-init, OpenSSH; `make debian-cloud`) built with qemu-rs
# (defaults: no accelerator line). The NoCloud
# seed comes from cd_files (bench/run.py writes user-data with the benchmark's fixed public key: Packer 1.6.6
# cannot hand its temporary key to cloud-init), the provisioner waits for cloud-init, writes 20 MB and cleans
# the image as the users' template does; compressed qcow2. Differences: `source "qemu-rs"`, `serial_log`
# instead of a qemuargs `-serial`, no `accelerator`.

variable "image" {
  type        = string
  description = "The Debian cloud image (images/debian-cloud/out/debian-12-genericcloud-amd64.qcow2)."
}

variable "seed_dir" {
  type        = string
  description = "Directory with the NoCloud user-data and meta-data."
}

variable "ssh_key" {
  type        = string
  description = "Private key whose public half is in user-data."
}

variable "output_dir" {
  type    = string
  default = "output-debian-12-qemu-rs"
}

variable "serial_log" {
  type    = string
  default = ""
}

source "qemu-rs" "debian-12" {
  iso_url          = var.image
  iso_checksum     = "none"
  disk_image       = true
  disk_size        = "3G"
  format           = "qcow2"
  disk_compression = true
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  machine_type     = "pc"
  memory           = 1024
  headless         = true
  output_directory = var.output_dir
  vm_name          = "debian-12.qcow2"
  cd_files         = ["${var.seed_dir}/user-data", "${var.seed_dir}/meta-data"]
  cd_label         = "cidata"
  boot_wait        = "-1s"
  serial_log       = var.serial_log

  ssh_username         = "debian"
  ssh_private_key_file = var.ssh_key
  ssh_timeout          = "20m"
  shutdown_command     = "sudo shutdown -P now"
}

build {
  sources = ["source.qemu-rs.debian-12"]

  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; sudo -E sh -c '{{ .Vars }} {{ .Path }}'"
    inline = [
      "cloud-init status --wait >/dev/null; cloud-init status --long",
      "dd if=/dev/urandom of=/var/lib/bench.bin bs=1M count=20 2>/dev/null",
      "cloud-init clean --logs --seed",
      "rm -f /home/debian/.ssh/authorized_keys",
      "truncate -s 0 /etc/machine-id",
      "sync",
    ]
  }
}
