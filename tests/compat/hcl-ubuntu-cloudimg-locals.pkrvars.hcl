release    = "jammy"
image_name = "jammy-server-cloudimg-amd64.img"
disk_size  = "12G"
