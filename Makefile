# SPDX-License-Identifier: Apache-2.0
VENV := .venv
BIN := $(VENV)/bin
# The kernel matrix (docs/testing.md): empty means 6.1 6.12 7.3 7.3-debug plus
# the host's own series; e.g. `make test KERNELS=6.12`.
KERNELS ?=
export KERNELS
# The kernel `make demo` and `make guest-test` boot: empty means the host's own series.
KERNEL ?=
# Series where vfio_pci_cookie may fail to build: its tests skip there, naming
# the compiler error; on any other kernel a failed build fails.  Empty: the
# module must build everywhere.
KMOD_PENDING :=
export KMOD_PENDING

.PHONY: setup demo test test-clients lint docs host-test guest-test kmod bench clean

setup:
	@tools/setup.sh

# Only what the demo boots: the host's own kernel series (docs/testing.md).
demo:
	@tools/setup.sh --demo
	$(BIN)/pyvfio vm kmod $(or $(KERNEL),default) --allow-fail "$(KMOD_PENDING)"
	$(BIN)/pyvfio vm run $(if $(KERNEL),--kernel $(KERNEL)) -- $(BIN)/python examples/wc_demo.py

test: setup
	@tools/test.sh

# DPDK and the kernel's VFIO selftests on both drivers, on every kernel of the
# matrix (make test runs them on the first kernel only: docs/testing.md).
test-clients: setup
	@tools/test.sh --clients

lint: setup
	$(BIN)/ruff check src tests examples tools bench docs/api
	$(BIN)/ruff format --check src tests examples tools bench docs/api
	$(BIN)/mypy

# The API reference, from the docstrings (docs/api), warnings as errors.
docs: setup
	$(BIN)/sphinx-build -q -E -W --keep-going -b html docs/api build/docs
	@echo "docs: build/docs/index.html"

host-test: setup
	$(BIN)/pytest tests/host

# The guest suite on one kernel (KERNEL=, default the host's own series).
guest-test: kmod
	$(BIN)/python -m pytest tests/guest -p no:cacheprovider --vfio-kernel=$(or $(KERNEL),default)

# vfio_pci_cookie, built for every kernel of the matrix into build/kmod/RELEASE/.
kmod: setup
	$(BIN)/pyvfio vm kmod --allow-fail "$(KMOD_PENDING)"

# Benchmarks (bench/README.md); exits 1 on a missed target. BENCH_ARGS=--no-make-test
# skips timing the whole suite; --kernel 6.1,7.3 runs the VM benches on each series.
bench: kmod
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf build $(VENV) src/*.egg-info
