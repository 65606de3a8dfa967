#!/usr/bin/env bash
# Builds the container image of deploy/Containerfile (Packer + QEMU + the released plugin) with Debian's podman
# and runs a test-guest build inside it: `make container`. Needs `make release` files in dist/ (made here) and
# the test guest (`make testguest`). The base image is Debian bookworm from a registry, or, when no registry is
# reachable, made here from Debian's packages with mmdebstrap and imported (CONTAINER_BASE overrides both).
# On hosts where podman's defaults cannot start a container (crun in a hybrid cgroup setup, a sandbox that
# forbids raising rlimits), it retries with runc, the cgroupfs manager and no default ulimits, and says so; when
# that fails too it stops with podman's error: this machine cannot run containers.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${CONTAINER_IMAGE:-localhost/qemu-rs:latest}
# podman and runc from Debian (not in scripts/install-deps.sh: only this target needs them)
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
podman=(podman)

probe() { "${podman[@]}" run --rm --network=host "$1" true >/dev/null 2>"$work/probe.err"; }

base=${CONTAINER_BASE:-}
if [ -z "$base" ]; then
    if podman pull -q docker.io/library/debian:bookworm-slim >/dev/null 2>&1; then
        base=docker.io/library/debian:bookworm-slim
    else
        base=localhost/qemu-rs-debian-base:bookworm
        if ! podman image exists "$base"; then
            echo "container: no registry reachable: making the Debian base image with mmdebstrap"
            mmdebstrap --variant=minbase --format=tar bookworm "$work/rootfs.tar" http://deb.debian.org/debian
            podman import -q "$work/rootfs.tar" "$base" >/dev/null
            rm -f "$work/rootfs.tar"
        fi
    fi
fi
if ! probe "$base"; then
    printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n' >"$work/containers.conf"
    export CONTAINERS_CONF="$work/containers.conf"
    podman=(podman --runtime runc)
    if ! probe "$base"; then
        echo "container: this machine cannot run containers: $(cat "$work/probe.err")" >&2
        exit 1
    fi
    echo "container: podman's defaults cannot start a container here; using runc, cgroupfs and no default ulimits"
fi

scripts/release.sh >/dev/null
version=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
zip="packer-plugin-qemu-rs_v${VERSION:-$version}_x5.0_linux_amd64.zip"
"${podman[@]}" build -q --network=host -f deploy/Containerfile --build-arg "BASE=$base" --build-arg "PLUGIN_ZIP=$zip" \
    -t "$IMAGE" . >/dev/null
echo "container: built $IMAGE"

# a test-guest build inside it: the cloud template, with the guest directory mounted
guest=${TESTGUEST_DIR:-$PWD/images/testguest/out}
[ -f "$guest/testguest.qcow2" ] || { echo "container: $guest/testguest.qcow2 is missing: run make testguest" >&2; exit 1; }
mkdir -p "$work/run"
cp images/testguest/testguest-disk-qemu-rs.pkr.hcl "$work/run/"
"${podman[@]}" run --rm --network=host -v "$guest:/guest:ro" -v "$work/run:/work" "$IMAGE" \
    build -color=false -var guest_dir=/guest -var output_dir=/work/output testguest-disk-qemu-rs.pkr.hcl | tee "$work/build.log"
[ -f "$work/run/output/testguest-disk.qcow2" ] || { echo "container: the build in the container made no image" >&2; exit 1; }
echo "container: a test-guest build ran inside $IMAGE: $(du -h "$work/run/output/testguest-disk.qcow2" | cut -f1) image"
