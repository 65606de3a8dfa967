#!/bin/sh -eux
# Brings the guest's packages up to date with whatever package manager it has.
if command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update && apt-get -y upgrade
elif command -v dnf >/dev/null; then
  dnf -y upgrade
elif command -v yum >/dev/null; then
  yum -y update
elif command -v apk >/dev/null; then
  apk update && apk upgrade
elif command -v zypper >/dev/null; then
  zypper --non-interactive update
fi
