# SPDX-License-Identifier: MIT OR Apache-2.0
# Entry points (DESIGN.md 4.1): make | make run | make test [FILTER=regex] |
# make soak [SOAK_CYCLES=n] | make deps | make clean. Build outputs:
# build/hypervisor.elf, build/guests/NAME.elf, build/bin/hvrun.

CARGO   ?= cargo
TARGET  := x86_64-unknown-none
BUILD   := build
HVRUN   := $(BUILD)/bin/hvrun
# The default scenario of `make run`; override to boot your own modules, e.g.
#   make run RUN_ARGS='--mem 512 path/to/kernel.elf:"console=hvc0"'
RUN_ARGS ?= --timeout 300 $(BUILD)/guests/hello.elf:"dom0 from make run"
FILTER  ?=

.PHONY: all build hypervisor guests host-tools run test lint unit-test scenarios deps clean bench soak

all: build

build: hypervisor guests host-tools

hypervisor: deps-quiet
	$(CARGO) build -p hypervisor --release --target $(TARGET)
	@mkdir -p $(BUILD)
	cp --remove-destination target/$(TARGET)/release/hypervisor $(BUILD)/hypervisor.elf

# Every guest-shim/guests/NAME (package NAME) -> build/guests/NAME.elf.
guests: deps-quiet
	@mkdir -p $(BUILD)/guests
	$(CARGO) build --release --target $(TARGET) $(patsubst %,-p %,$(notdir $(wildcard guest-shim/guests/*)))
	@for g in $(notdir $(wildcard guest-shim/guests/*)); do \
		cp --remove-destination target/$(TARGET)/release/$$g $(BUILD)/guests/$$g.elf || exit 1; \
	done

host-tools:
	$(CARGO) build --release -p tools -p tests
	@mkdir -p $(BUILD)/bin
	cp --remove-destination target/release/hvrun $(HVRUN)
	cp --remove-destination target/release/busybox-initramfs target/release/bzimage2elf $(BUILD)/bin/
	cp --remove-destination target/release/scenarios $(BUILD)/bin/scenarios

run: deps build
	$(HVRUN) $(RUN_ARGS)

test: deps build lint unit-test scenarios

# Formatting and clippy (host and bare-metal builds) are part of CI.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p hypervisor --release --target $(TARGET) -- -D warnings

unit-test:
	$(CARGO) test --workspace

scenarios:
	FILTER='$(FILTER)' $(BUILD)/bin/scenarios

# DESIGN.md 4.5: every benchmark guest on our hypervisor and on Xen 4.17, path length
# (-icount) and wall time (TCG); tables on stdout, build/bench/results.{json,svg}.
bench: deps build
	$(CARGO) build --release -p tools --bin hvbench
	@mkdir -p $(BUILD)/bin
	cp --remove-destination target/release/hvbench $(BUILD)/bin/bench
	$(BUILD)/bin/bench --out $(BUILD)/bench

# Domain churn: a domU that reboots at once is rebuilt under a new id, SOAK_CYCLES
# times, while the soak guest (dom0) checks that the free-frame count never moves.
SOAK_CYCLES ?= 1000
soak: deps build
	$(HVRUN) --timeout 3600 --expect '^soak: [0-9]+ cycles in' \
		$(BUILD)/guests/soak.elf:cycles=$(SOAK_CYCLES) \
		'$(BUILD)/guests/domu-peer.elf:domu name=churn mem=16 -- port=0 rounds=0 then=reboot'

deps:
	@bash tools/scripts/deps.sh

# The bare-metal build needs the Rust target; everything else is checked by `deps`.
deps-quiet:
	@rustup target list --installed 2>/dev/null | grep -qx $(TARGET) || rustup target add $(TARGET)

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
