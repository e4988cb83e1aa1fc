# SPDX-License-Identifier: Apache-2.0
VENV := .venv
BIN := $(VENV)/bin
# The emulated devices: edu, ivshmem-plain, nvme
DEMO_IDS := -d 1234:11e8 -d 1af4:1110 -d 1b36:0010

.PHONY: setup demo test lint host-test guest-test clean

setup:
	@tools/setup.sh

demo: setup
	$(BIN)/pyvfio vm run -- $(BIN)/pyvfio list $(DEMO_IDS)

test: setup
	@tools/test.sh

lint: setup
	$(BIN)/ruff check src tests examples tools
	$(BIN)/ruff format --check src tests examples tools
	$(BIN)/mypy

host-test: setup
	$(BIN)/pytest tests/host

guest-test: setup
	$(BIN)/pyvfio vm run -- $(BIN)/python -m pytest tests/guest -p no:cacheprovider

clean:
	rm -rf build $(VENV) src/*.egg-info
