os_name      = "debian"
os_version   = "12.5"
iso_url      = "https://cdimage.debian.org/cdimage/archive/12.5.0/amd64/iso-cd/debian-12.5.0-amd64-netinst.iso"
iso_checksum = "file:./iso/SHA256SUMS-debian"
boot_command = [
  "<wait><esc><wait>auto preseed/url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/debian/preseed.cfg<wait>",
  " netcfg/get_hostname={{ .Name }}<enter>"
]
