#!/bin/sh
# What `make run` and `make test` need beyond rustup and make, set up once:
# the pinned toolchain with its target (rust-toolchain.toml), the Debian
# packages (installed when run as root, otherwise named in one line), and
# the sdfgen venv the tests use (target/sdfgen-venv: sdfgen and the
# iommu_sdf package, sdf/).
#
#   tools/setup.sh run      what `make run` needs
#   tools/setup.sh test     what `make test` needs
#   tools/setup.sh sdfgen   the sdfgen venv alone
set -eu
cd "$(dirname "$0")/.."
goal="${1:-test}"

missing=""
need() { command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
if [ "$goal" != sdfgen ]; then
    # rustup installs the toolchain rust-toolchain.toml pins, with its
    # components and targets; an installed toolchain only gains what it lacks.
    rustup toolchain install >/dev/null 2>&1 || rustup toolchain install
    need qemu-system-aarch64 qemu-system-arm
fi
if [ "$goal" = test ]; then
    # libFuzzer (tests/fuzz_target.rs) is C++, built from source.
    need c++ g++
    # The example C driver PD (tests/c_header.rs) is compiled for aarch64.
    need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
fi
if [ "$goal" = test ] || [ "$goal" = sdfgen ]; then
    need python3 python3
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$missing python3-venv"
fi
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null
    else
        [ "$goal" = sdfgen ] && goal=sdfgen-venv
        echo "make $goal needs:$missing; install them with: sudo apt-get install -y$missing" >&2
        exit 1
    fi
fi

# The iommu_sdf package (sdf/) and sdfgen, its dependency, from PyPI, into
# a venv of our own (a distribution's Python refuses `pip install` outside
# one); editable, so the venv imports the package as it is in sdf/.
venv=target/sdfgen-venv
if [ "$goal" != run ] && ! $venv/bin/python -c 'import sdfgen, iommu_sdf' >/dev/null 2>&1; then
    python3 -m venv $venv
    $venv/bin/pip install --quiet --editable sdf/
fi
