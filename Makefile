# The two commands of a new user:
#   make run    boot the system in QEMU
#   make test   run every test (the command CI runs)
#
# With MICROKIT_SDK set (Microkit 2.3.0), `make` builds the PD images and
# the microkit tool turns system.xml into $(BUILD)/loader.img; `make run`
# boots it on seL4. Without an SDK, `make run` boots the bare-metal demo:
# the same server core and edu driver logic in one image on QEMU's SMMUv3,
# with no seL4 isolation (it says so).

MICROKIT_BOARD ?= qemu_virt_aarch64
MICROKIT_CONFIG ?= debug
BUILD ?= build
TARGET := aarch64-unknown-none
QEMU ?= qemu-system-aarch64
CARGO ?= cargo

# The system description; another pair builds and runs another system.
SYSTEM_XML ?= system.xml
IOMMU_XML ?= iommu.xml
export IOMMU_SYSTEM_XML := $(abspath $(SYSTEM_XML))
export IOMMU_POLICY_XML := $(abspath $(IOMMU_XML))
# QEMU's devices are the configuration's: each <device qemu="..."> at the
# address its stream ID gives (checked first: a bad pair stops here).
QEMU_DEVICES = $$($(CARGO) run -q -p sysgen -- --qemu-devices $(SYSTEM_XML) $(IOMMU_XML))
# The disk behind `drive=disk0` (iommu.xml's nvme device, disk_blocks="8192"
# of 512 bytes: 4 MiB; a driver refuses shares past its real size): created empty
# when missing; tests/demo.rs gives its own and reads it back afterwards.
NVME_IMAGE ?= $(BUILD)/nvme.img
QEMU_DRIVE = -drive file=$(NVME_IMAGE),if=none,id=disk0,format=raw

PD_ENV := MICROKIT_BOARD=$(MICROKIT_BOARD) MICROKIT_CONFIG=$(MICROKIT_CONFIG)
# Each image crate is its own workspace (aarch64 only); they share target/.
PD_TARGET_DIR ?= $(CURDIR)/target/pds
PD_OUT := $(PD_TARGET_DIR)/$(TARGET)/release
DEMO_TARGET_DIR ?= $(CURDIR)/target/demo
DEMO := $(DEMO_TARGET_DIR)/$(TARGET)/release/demo

.PHONY: all run test lint setup setup-run sdfgen-venv pds demo c-run fuzz clean bench-sel4

# What the two commands need beyond rustup and make (tools/setup.sh):
# installed when run as root, otherwise named in one line.
setup:
	@tools/setup.sh test
setup-run:
	@tools/setup.sh run
# A venv with sdfgen and the iommu_sdf package (sdf/, editable), for your
# own system descriptions: target/sdfgen-venv/bin/python my_system.py.
sdfgen-venv:
	@tools/setup.sh sdfgen

ifdef MICROKIT_SDK
# microkit/build.rs checks the ABI's invocation labels against this SDK.
PD_ENV += MICROKIT_SDK=$(MICROKIT_SDK)

all: $(BUILD)/loader.img

# The tool gets the description without its <io_address_space> elements
# (on aarch64 it refuses them; the IOMMU server builds them), every other
# byte as it is.
$(BUILD)/loader.img: pds $(SYSTEM_XML) $(IOMMU_XML)
	$(CARGO) run -q -p sysgen -- --microkit-sdf $(SYSTEM_XML) $(IOMMU_XML) > $(BUILD)/microkit.xml
	$(MICROKIT_SDK)/bin/microkit $(BUILD)/microkit.xml --search-path $(BUILD) \
		--board $(MICROKIT_BOARD) --config $(MICROKIT_CONFIG) \
		-o $@ -r $(BUILD)/report.txt

# QEMU_FLAGS: more of QEMU's options, e.g. "-icount shift=0" for the
# guest's DMA round trip figure (docs/benchmarks.md).
run: setup-run $(BUILD)/loader.img
	test -f $(NVME_IMAGE) || (mkdir -p $(dir $(NVME_IMAGE)) && truncate -s 4M $(NVME_IMAGE))
	devices="$(QEMU_DEVICES)" && \
	$(QEMU) -machine virt,virtualization=on,iommu=smmuv3 -cpu cortex-a53 -m 2G $(QEMU_FLAGS) \
		-nographic -nic none -serial mon:stdio \
		-device loader,file=$(BUILD)/loader.img,addr=0x70000000,cpu-num=0 $(QEMU_DRIVE) $$devices

# End-to-end figures on seL4 (docs/benchmarks.md, "On seL4, end to end"): the
# benchmark system bench/system.xml + bench/iommu.xml (the server and one
# benchmark PD driving an nvme device), built apart from the example
# (its own build directory and PD target directory) for the release
# kernel (the debug server scans its stack after every request), booted with
# -icount shift=0 so that time counts instructions, stopped once the
# benchmark PD has printed its figures.
BENCH_BUILD ?= build-bench
BENCH_CONFIG ?= release
BENCH_PAIR = SYSTEM_XML=bench/system.xml IOMMU_XML=bench/iommu.xml BUILD=$(BENCH_BUILD) \
	MICROKIT_CONFIG=$(BENCH_CONFIG) PD_TARGET_DIR=$(CURDIR)/target/pds-bench
BENCH_QEMU_DEVICES = $$($(CARGO) run -q -p sysgen -- --qemu-devices bench/system.xml bench/iommu.xml)
bench-sel4: setup-run
	$(MAKE) $(BENCH_PAIR) pds
	cp $(CURDIR)/target/pds-bench/$(TARGET)/release/bench-pd $(BENCH_BUILD)/bench.elf
	$(MICROKIT_SDK)/bin/microkit bench/system.xml --search-path $(BENCH_BUILD) \
		--board $(MICROKIT_BOARD) --config $(BENCH_CONFIG) \
		-o $(BENCH_BUILD)/loader.img -r $(BENCH_BUILD)/report.txt
	test -f $(BENCH_BUILD)/nvme.img || truncate -s 4M $(BENCH_BUILD)/nvme.img
	devices="$(BENCH_QEMU_DEVICES)" && \
	tools/bench-sel4.sh $(BENCH_BUILD)/qemu.log \
		$(QEMU) -machine virt,virtualization=on,iommu=smmuv3 -cpu cortex-a53 -m 2G \
		-icount shift=0 -display none -monitor none -serial stdio -nic none \
		-device loader,file=$(BENCH_BUILD)/loader.img,addr=0x70000000,cpu-num=0 \
		-drive file=$(BENCH_BUILD)/nvme.img,if=none,id=disk0,format=raw $$devices
else
all: pds demo

bench-sel4:
	@echo "make bench-sel4: needs MICROKIT_SDK (Microkit 2.3.0): it boots seL4"; exit 1

run: setup-run demo
	@echo "make run: MICROKIT_SDK is not set: running the bare-metal demo (no seL4)"
	test -f $(NVME_IMAGE) || (mkdir -p $(dir $(NVME_IMAGE)) && truncate -s 4M $(NVME_IMAGE))
	devices="$(QEMU_DEVICES)" && \
	$(QEMU) -M virt,iommu=smmuv3 -cpu cortex-a57 -m 512M -nographic -nic none \
		-semihosting -kernel $(DEMO) $(QEMU_DRIVE) $$devices
endif

# Every PD image, named as system.xml's program_image elements name them,
# and the protocol's C header for C PDs (iommu_client.h includes it).
pds:
	$(CARGO) run -q -p sysgen -- $(SYSTEM_XML) $(IOMMU_XML) > /dev/null
	mkdir -p $(BUILD)/include
	$(CARGO) run -q -p sysgen -- --c-header > $(BUILD)/include/iommu_proto.h
	cd iommu-server/iommu-server-pd && $(PD_ENV) $(CARGO) build --release --target-dir $(PD_TARGET_DIR)
	cd pd-clients/pds && $(PD_ENV) $(CARGO) build --release --target-dir $(PD_TARGET_DIR)
	cp $(PD_OUT)/iommu-server-pd $(BUILD)/iommu_server.elf
	cp $(PD_OUT)/edu-driver-pd $(BUILD)/edu_driver.elf
	cp $(PD_OUT)/manager-pd $(BUILD)/manager.elf
	cp $(PD_OUT)/nvme-driver-pd $(BUILD)/nvme_driver.elf
	cp $(PD_OUT)/blk-client-pd $(BUILD)/blk_client.elf
	cp $(PD_OUT)/edu-static-pd $(BUILD)/edu_static.elf
	cp $(PD_OUT)/vmm-pd $(BUILD)/vmm.elf

demo:
	cd demo && $(CARGO) build --release --target-dir $(DEMO_TARGET_DIR)

# A C PD's code on this machine against the server core, no SDK needed
# (pd-clients/c-host): its .c files compiled against the stand-in
# microkit.h and the headers generated for PD $(C_PD_NAME) of the system
# description, its memory where system.xml puts it, init then notified
# for a DMA fault of its device at each C_FAULTS IOVA; every protected call
# it makes is served by the server core, configured as the server PD is.
C_PD ?= pd-clients/pds/c-driver
C_PD_NAME ?= edu_a
C_STD ?= c11
C_FAULTS ?= 0xdead000
c-run:
	$(CARGO) run -q -p c-host -- --std $(C_STD) $(foreach f,$(C_FAULTS),--fault $(f)) \
		$(C_PD) $(C_PD_NAME) $(SYSTEM_XML) $(IOMMU_XML)

# The habits CI holds every change to, in every workspace: formatted, no
# clippy warning (the bare-metal workspaces checked for their target), no
# rustdoc warning.
FMT_WORKSPACES := . demo fuzz hw-qemu-test iommu-server/iommu-server-pd pd-clients/pds qemu-virt
METAL_WORKSPACES := demo hw-qemu-test iommu-server/iommu-server-pd pd-clients/pds qemu-virt
lint: setup
	for w in $(FMT_WORKSPACES); do (cd $$w && $(CARGO) fmt --check) || exit 1; done
	$(CARGO) clippy -q --workspace --all-targets -- -D warnings
	for w in $(METAL_WORKSPACES); do \
		(cd $$w && $(PD_ENV) $(CARGO) clippy -q --release --target $(TARGET) \
			--target-dir $(CURDIR)/target/lint -- -D warnings) || exit 1; \
	done
	cd fuzz && $(CARGO) clippy -q --all-targets --target-dir $(CURDIR)/target/lint-fuzz -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -q --workspace --no-deps

# The test command CI runs: the habits, then every test. tests/sdfgen.rs
# takes sdfgen from the venv `make setup` made.
test: setup lint
	SDFGEN_PYTHON=$(CURDIR)/target/sdfgen-venv/bin/python $(CARGO) test --workspace --all-targets

# Coverage-guided fuzzing of the server (libFuzzer): builds fuzz/ with
# coverage instrumentation on stable Rust and runs each of FUZZ_TARGETS for
# FUZZ_SECONDS (serve: byte-level requests; steps: typed request sequences),
# starting from the seeds fuzz/seeds writes and keeping what it learns in
# $(FUZZ_CORPUS)/<target>. A finding stops the run and leaves its input in
# target/fuzz-artifacts/<target>/. FUZZ_ARGS go to libFuzzer as they are
# (e.g. -seed=1, or -runs=0 to run the corpus once and stop). The value
# profile (compared constants as features) guides the byte-level target to
# the constants it must guess; the steps target takes its constants from
# palettes, and there the profile only multiplied its corpus and slowed its
# finds.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= serve steps
FUZZ_CORPUS ?= target/fuzz-corpus
FUZZ_ARGS ?=
# Absolute: the seed writer runs in fuzz/, libFuzzer here.
FUZZ_CORPUS_DIR = $(abspath $(FUZZ_CORPUS))
FUZZ_HOST := $(shell rustc -vV | sed -n 's/^host: //p')
FUZZ_FLAGS := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
	-Cllvm-args=-sanitizer-coverage-pc-table \
	-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing
fuzz:
	cd fuzz && RUSTFLAGS="$(FUZZ_FLAGS)" $(CARGO) build --release -p iommu-fuzz \
		--target $(FUZZ_HOST) --target-dir $(CURDIR)/target/fuzz
	cd fuzz && $(CARGO) build --release -q -p iommu-fuzz-seeds \
		--target-dir $(CURDIR)/target/fuzz
	set -e; for t in $(FUZZ_TARGETS); do \
		echo "== fuzz target $$t for $(FUZZ_SECONDS) s"; \
		$(CURDIR)/target/fuzz/release/iommu-fuzz-seeds $$t $(FUZZ_CORPUS_DIR)/$$t; \
		mkdir -p $(CURDIR)/target/fuzz-artifacts/$$t; \
		case $$t in serve) profile=1;; *) profile=0;; esac; \
		$(CURDIR)/target/fuzz/$(FUZZ_HOST)/release/$$t -max_total_time=$(FUZZ_SECONDS) \
			-use_value_profile=$$profile -print_final_stats=1 \
			-artifact_prefix=$(CURDIR)/target/fuzz-artifacts/$$t/ $(FUZZ_ARGS) \
			$(FUZZ_CORPUS_DIR)/$$t; \
	done

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
