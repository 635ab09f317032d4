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

.PHONY: all run test setup setup-run pds demo c-run fuzz clean

# What the two commands need beyond rustup and make (tools/setup.sh):
# installed when run as root, otherwise named in one line.
setup:
	@tools/setup.sh test
setup-run:
	@tools/setup.sh run

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

run: setup-run $(BUILD)/loader.img
	test -f $(NVME_IMAGE) || (mkdir -p $(dir $(NVME_IMAGE)) && truncate -s 4M $(NVME_IMAGE))
	devices="$(QEMU_DEVICES)" && \
	$(QEMU) -machine virt,virtualization=on,iommu=smmuv3 -cpu cortex-a53 -m 2G \
		-nographic -nic none -serial mon:stdio \
		-device loader,file=$(BUILD)/loader.img,addr=0x70000000,cpu-num=0 $(QEMU_DRIVE) $$devices
else
all: pds demo

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

# The test command CI runs. tests/sdfgen.rs takes sdfgen from the venv
# `make setup` made.
test: setup
	SDFGEN_PYTHON=$(CURDIR)/target/sdfgen-venv/bin/python $(CARGO) test --workspace --all-targets

# Coverage-guided fuzzing of the server's request path (libFuzzer): builds
# fuzz/ with coverage instrumentation on stable Rust and runs it for
# FUZZ_SECONDS, keeping what it learns in $(FUZZ_CORPUS).
FUZZ_SECONDS ?= 60
FUZZ_CORPUS ?= target/fuzz-corpus
FUZZ_HOST := $(shell rustc -vV | sed -n 's/^host: //p')
FUZZ_FLAGS := -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
	-Cllvm-args=-sanitizer-coverage-pc-table \
	-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing
fuzz:
	cd fuzz && RUSTFLAGS="$(FUZZ_FLAGS)" $(CARGO) build --release -p iommu-fuzz \
		--target $(FUZZ_HOST) --target-dir $(CURDIR)/target/fuzz
	cd fuzz && $(CARGO) run --release -q -p iommu-fuzz-seeds \
		--target-dir $(CURDIR)/target/fuzz -- $(FUZZ_CORPUS)
	$(CURDIR)/target/fuzz/$(FUZZ_HOST)/release/serve -max_total_time=$(FUZZ_SECONDS) \
		-use_value_profile=1 -print_final_stats=1 -artifact_prefix=$(CURDIR)/target/ $(FUZZ_CORPUS)

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
