# qemu-rs — the two commands that matter: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
PROFILE_DIR := target/release
PLUGIN := $(PROFILE_DIR)/packer-plugin-qemu-rs
LAYOUT ?= both

.PHONY: all deps build build-debug release container install testguest debian-cloud debian-installer-iso debian-installer images test lint docs unit demo bench chaos parallel fuzz clean

all: build

## deps: install the Debian packages needed to build, test and demo (no-op when present)
deps:
	scripts/install-deps.sh

## build: the release plugin binary
build:
	$(CARGO) build --release --locked -p packer-plugin-qemu-rs

## release: dist/ zips per platform, SHA256SUMS and its signature (scripts/release.sh; VERSION=…, GPG_FINGERPRINT=…)
release: deps
	scripts/release.sh

## container: the container image of deploy/Containerfile (podman), and a test-guest build inside it
container: deps build testguest
	scripts/container.sh

build-debug:
	$(CARGO) build --locked --workspace --all-targets

## install: put the plugin where Packer finds it (LAYOUT=legacy|modern|both)
install: build
	scripts/install-plugin.sh $(PLUGIN) $(LAYOUT)

## testguest: the tiny test guest (images/testguest/out)
testguest: deps
	images/testguest/build.sh

## debian-cloud: a Debian 12 cloud image from Debian's packages (images/debian-cloud/out; no-op when up to date)
debian-cloud: deps
	images/debian-cloud/build.sh

## debian-installer-iso: a Debian 12 installer ISO from Debian's netboot package (images/debian-installer/out)
debian-installer-iso: deps
	images/debian-installer/build-iso.sh

## debian-installer: a real preseeded Debian install from that ISO (needs a mirror that serves the installer's .udeb files)
debian-installer: debian-installer-iso build
	scripts/debian-installer.sh

## lint: formatting and clippy
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

## docs: regenerate the option tables of docs/ from the options' doc comments, then .web-docs/
docs:
	QEMU_RS_UPDATE_DOCS=1 $(CARGO) test --locked -p qemu-rs-tests --test docs_options generated_option_tables_match_the_code

## test: everything — lint, unit, protocol, real Packer, real QEMU
## (the guest images are built beside the compiler: mmdebstrap mostly waits on downloads and dpkg)
test: deps
	$(MAKE) --no-print-directory -j2 --output-sync=target images build-debug
	$(MAKE) --no-print-directory lint
	$(CARGO) test --locked --workspace --no-fail-fast

## images: the guest images the tests boot, one after the other
images: deps
	$(MAKE) --no-print-directory -j1 testguest debian-cloud debian-installer-iso

## demo: install what is missing, build and install the plugin, the test guest and the Debian image, run Packer with them
demo: deps build install testguest debian-cloud
	scripts/demo.sh

## bench: qemu-rs against Packer's built-in qemu builder, side by side (bench/README.md; BENCH_ARGS=--quick)
bench: deps build testguest debian-cloud
	bench/run.py $(BENCH_ARGS)

## chaos: interrupt builds at random moments, check nothing is left behind (tests/chaos/run.py; COUNT=40 SEED=N)
COUNT ?= 40
chaos: deps testguest
	$(CARGO) build --locked -p packer-plugin-qemu-rs
	tests/chaos/run.py --count $(COUNT) $(if $(SEED),--seed $(SEED))

## parallel: 8 builds at once sharing one download cache (tests/chaos/run.py --parallel 8)
parallel: deps testguest
	$(CARGO) build --locked -p packer-plugin-qemu-rs
	tests/chaos/run.py --parallel 8

## fuzz: every cargo-fuzz target for FUZZ_SECONDS (default 60) each, one core; fails on a crash (fuzz/README.md)
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_TARGETS)

clean:
	$(CARGO) clean
	rm -rf images/testguest/out images/debian-cloud/out images/debian-installer/out
