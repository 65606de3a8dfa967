#!/bin/sh -eux
# Zeroes free space so the final qemu-img convert can compact the image.
rm -rf /tmp/* /var/tmp/*
dd if=/dev/zero of=/EMPTY bs=1M || true
rm -f /EMPTY
sync
