#!/bin/sh -eux
# Resets cloud-init so the image runs it again on first boot.
cloud-init clean --logs --seed || true
rm -f /etc/machine-id && touch /etc/machine-id
