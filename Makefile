# SPDX-License-Identifier: Apache-2.0
VENV := .venv
BIN := $(VENV)/bin

# The guest kernel's release, from the linux-image-amd64 metapackage (never hard-coded).
KREL = $(shell $(BIN)/python -c "from pyvfio.vm.kernel import release_from_metapackage as r; print(r())")

.PHONY: setup demo test lint host-test guest-test kmod bench clean

setup:
	@tools/setup.sh

demo: kmod
	$(BIN)/pyvfio vm run -- $(BIN)/python examples/wc_demo.py

test: setup
	@tools/test.sh

lint: setup
	$(BIN)/ruff check src tests examples tools
	$(BIN)/ruff format --check src tests examples tools
	$(BIN)/mypy

host-test: setup
	$(BIN)/pytest tests/host

guest-test: kmod
	$(BIN)/pyvfio vm run -- $(BIN)/python -m pytest tests/guest -p no:cacheprovider

# The vfio_pci_cookie module, built against the headers of the kernel the VM boots.
kmod: setup
	$(MAKE) -C kmod KDIR=/lib/modules/$(KREL)/build

# Benchmarks (bench/README.md); BENCH_ARGS=--no-make-test skips timing the whole suite.
bench: kmod
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf build $(VENV) src/*.egg-info
	$(MAKE) -C kmod KDIR=/lib/modules/$(KREL)/build clean
