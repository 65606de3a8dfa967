#!/usr/bin/env bash
# Makes the release files Packer's installer and the integrations registry expect:
#   dist/packer-plugin-qemu-rs_v{VERSION}_x5.0_linux_{amd64,arm64}.zip   (one binary each, named like the zip)
#   dist/packer-plugin-qemu-rs_v{VERSION}_SHA256SUMS                     (sha256sum of the zips)
#   dist/packer-plugin-qemu-rs_v{VERSION}_SHA256SUMS.sig                 (detached OpenPGP signature, binary)
#
#   scripts/release.sh            (make release; VERSION from the environment, else the crate's version)
#
# Environment:
#   VERSION            the version to release (no leading v), e.g. 0.2.0 or 0.2.0-rc1; the binary reports it
#                      in `describe` (compiled in through QEMU_RS_RELEASE_VERSION)
#   DIST               output directory (default dist/), emptied of this version's files first
#   GPG_FINGERPRINT    the key that signs the sums (gpg --local-user); GNUPGHOME as gpg reads it. Unset: no
#                      signature, with a warning (set RELEASE_REQUIRE_SIGNATURE=1 to make that an error)
#   GPG_PASSPHRASE     the key's passphrase, if it has one (given to gpg on a pipe, never on the command line)
#   RELEASE_TARGETS    space-separated Rust targets (default: x86_64-unknown-linux-gnu and, when this
#                      toolchain has its standard library, aarch64-unknown-linux-gnu with Debian's
#                      gcc-aarch64-linux-gnu as linker)
#   RELEASE_PROFILE    cargo profile (default release)
#   RELEASE_BINARY     package this already built binary for the host instead of building (its `describe`
#                      must report VERSION); for pipelines that build in a step of their own, and for the tests
#   CARGO_TARGET_DIR   as cargo reads it
set -euo pipefail
cd "$(dirname "$0")/.."

crate_version=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
VERSION=${VERSION:-$crate_version}
VERSION=${VERSION#v}
if ! [[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
    echo "release: VERSION=$VERSION is not a semantic version (MAJOR.MINOR.PATCH[-PRERELEASE])" >&2
    exit 1
fi
DIST=${DIST:-dist}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
PROFILE=${RELEASE_PROFILE:-release}
case "$PROFILE" in release) PROFILE_DIR=release ;; dev) PROFILE_DIR=debug ;; *) PROFILE_DIR=$PROFILE ;; esac
NAME=packer-plugin-qemu-rs
API=x5.0
mkdir -p "$DIST"
rm -f "$DIST/${NAME}_v${VERSION}_"*

host=$(rustc -vV | sed -n 's/^host: //p')
sysroot=$(rustc --print sysroot)
if [ -z "${RELEASE_TARGETS:-}" ]; then
    RELEASE_TARGETS=$host
    if [ -d "$sysroot/lib/rustlib/aarch64-unknown-linux-gnu/lib" ]; then
        RELEASE_TARGETS="$RELEASE_TARGETS aarch64-unknown-linux-gnu"
    else
        echo "release: linux_arm64 skipped: this Rust toolchain ($(rustc --version)) has no standard library for" \
            "aarch64-unknown-linux-gnu (rustup target add aarch64-unknown-linux-gnu, and apt-get install" \
            "gcc-aarch64-linux-gnu, then run again)" >&2
    fi
fi

for target in $RELEASE_TARGETS; do
    case "$target" in
        x86_64-unknown-linux-gnu) arch=amd64 ;;
        aarch64-unknown-linux-gnu) arch=arm64 ;;
        *) echo "release: unsupported target $target (x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu)" >&2; exit 1 ;;
    esac
    env=(QEMU_RS_RELEASE_VERSION="$VERSION")
    if [ "$target" = aarch64-unknown-linux-gnu ] && [ "$host" != "$target" ]; then
        command -v aarch64-linux-gnu-gcc >/dev/null ||
            { echo "release: arm64 needs Debian's gcc-aarch64-linux-gnu (aarch64-linux-gnu-gcc)" >&2; exit 1; }
        env+=(CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc)
    fi
    if [ "$target" = "$host" ] && [ -n "${RELEASE_BINARY:-}" ]; then
        bin=$RELEASE_BINARY
        [ -x "$bin" ] || { echo "release: RELEASE_BINARY=$bin is not an executable" >&2; exit 1; }
    elif [ "$target" = "$host" ]; then
        echo "release: building $NAME $VERSION for $target"
        # the host build shares target/<profile> with `make build` (only the binary crate is rebuilt)
        env "${env[@]}" cargo build --profile "$PROFILE" --locked -p "$NAME"
        bin="$TARGET_DIR/$PROFILE_DIR/$NAME"
    else
        echo "release: building $NAME $VERSION for $target"
        env "${env[@]}" cargo build --profile "$PROFILE" --locked -p "$NAME" --target "$target"
        bin="$TARGET_DIR/$target/$PROFILE_DIR/$NAME"
    fi
    if [ "$target" = "$host" ]; then
        got=$(PACKER_PLUGIN_MAGIC_COOKIE=d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2 \
            "$bin" describe | sed -n 's/.*"version": *"\([^"]*\)".*/\1/p')
        [ "$got" = "$VERSION" ] || { echo "release: $bin describe says version '$got', not $VERSION" >&2; exit 1; }
    fi
    base="${NAME}_v${VERSION}_${API}_linux_${arch}"
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    install -m 0755 "$bin" "$stage/$base"
    # fixed timestamps: the same binary gives the same zip
    touch -d @0 "$stage/$base"
    (cd "$stage" && TZ=UTC zip -q -X -D "$base.zip" "$base")
    mv "$stage/$base.zip" "$DIST/"
    rm -rf "$stage"
    trap - EXIT
done

sums="${NAME}_v${VERSION}_SHA256SUMS"
(cd "$DIST" && sha256sum "${NAME}_v${VERSION}_${API}_linux_"*.zip >"$sums")
echo "release: $DIST/$sums"
if [ -n "${GPG_FINGERPRINT:-}" ]; then
    gpg_args=(--batch --yes --local-user "$GPG_FINGERPRINT" --output "$DIST/$sums.sig" --detach-sign)
    if [ -n "${GPG_PASSPHRASE:-}" ]; then
        gpg --pinentry-mode loopback --passphrase-fd 3 "${gpg_args[@]}" "$DIST/$sums" 3<<<"$GPG_PASSPHRASE"
    else
        gpg "${gpg_args[@]}" "$DIST/$sums"
    fi
    gpg --batch --verify "$DIST/$sums.sig" "$DIST/$sums" 2>/dev/null ||
        { echo "release: the signature just made does not verify" >&2; exit 1; }
    echo "release: $DIST/$sums.sig (signed by $GPG_FINGERPRINT)"
elif [ "${RELEASE_REQUIRE_SIGNATURE:-0}" = 1 ]; then
    echo "release: GPG_FINGERPRINT is not set and RELEASE_REQUIRE_SIGNATURE=1: no signature made" >&2
    exit 1
else
    echo "release: GPG_FINGERPRINT is not set: the sums are not signed (the registry needs $sums.sig)" >&2
fi
ls -l "$DIST/${NAME}_v${VERSION}_"*
