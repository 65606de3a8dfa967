#!/bin/sh -eux
# BSD post-install: sudo for the packer user and a quiet boot.
if [ "$(uname)" = FreeBSD ]; then
  pkg install -y sudo
  echo 'autoboot_delay="1"' >> /boot/loader.conf
else
  pkg_add sudo--
fi
