# Debian 12 where the install network has no route to the build host: the preseed file and a
# first-boot script travel on a floppy instead of over HTTP.

source "qemu" "debian_floppy" {
  iso_url      = "https://cdimage.debian.org/cdimage/release/current/amd64/iso-cd/debian-12.5.0-amd64-netinst.iso"
  iso_checksum = "sha256:e811ccb363b7eea1b8ebc856707b258cadfbba88142bc56e3053b79372400402"

  floppy_files = ["floppy/debian/*.cfg", "scripts/linux/sshd.sh"]
  floppy_dirs  = ["scripts/bsd"]
  floppy_label = "PRESEED"
  floppy_content = {
    "README.TXT" = "Answer files for the unattended Debian install."
  }

  boot_wait = "5s"
  boot_command = [
    "<esc><wait>",
    "auto preseed/file=/floppy/preseed.cfg ",
    "debian-installer=en_US.UTF-8 locale=en_US.UTF-8 kbd-chooser/method=us ",
    "netcfg/get_hostname=debian netcfg/get_domain=localdomain ",
    "<enter>"
  ]
  memory           = 1024
  headless         = true
  ssh_username     = "packer"
  ssh_password     = "packer"
  ssh_timeout      = "45m"
  shutdown_command = "echo packer | sudo -S poweroff"
  output_directory = "output-debian-floppy"
}

build {
  sources = ["source.qemu.debian_floppy"]

  provisioner "shell" {
    inline = ["ls /media/floppy || true"]
  }
}
