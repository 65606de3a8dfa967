# A storage test image: the OS disk plus two blank data disks for a ZFS mirror, all on the SCSI
# bus; qemu-img gets extra flags for cluster size and lazy refcounts.

source "qemu" "zfs" {
  iso_url      = "https://cdimage.debian.org/cdimage/release/current/amd64/iso-cd/debian-12.5.0-amd64-netinst.iso"
  iso_checksum = "sha256:e811ccb363b7eea1b8ebc856707b258cadfbba88142bc56e3053b79372400402"

  disk_size            = "16G"
  disk_additional_size = ["8G", "8G"]
  disk_interface       = "scsi"
  disk_cache           = "none"
  format               = "qcow2"
  qemu_img_args {
    create  = ["-o", "cluster_size=2M,lazy_refcounts=on"]
    convert = ["-o", "cluster_size=2M"]
    resize  = ["--shrink"]
  }

  memory           = 2048
  headless         = true
  http_directory   = "http/debian"
  boot_command     = ["<esc><wait>auto preseed/url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg<enter>"]
  ssh_username     = "packer"
  ssh_password     = "packer"
  ssh_timeout      = "45m"
  shutdown_command = "echo packer | sudo -S poweroff"
  output_directory = "output-zfs"
  vm_name          = "zfs-lab"
}

build {
  sources = ["source.qemu.zfs"]

  provisioner "shell" {
    inline = ["lsblk"]
  }
}
