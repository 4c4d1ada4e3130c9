# Everything a fresh machine needs: `make demo` runs server + simulator + console,
# `make test` runs the checks and the whole test suite (what CI runs).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Debian packages the tests and the demo need (Qt's X11 backend libraries, Xvfb for screenshots;
# for tests/installers: dpkg-deb with zstd, systemd-analyze, desktop-file-validate, makensis, ar).
APT_PACKAGES := libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libegl1 xvfb \
                mosquitto-clients libcoap3-bin amqp-tools \
                dpkg-dev zstd binutils systemd desktop-file-utils nsis

.PHONY: setup demo test lint typecheck unit bench services system-deps dist clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

system-deps:
	@scripts/system-deps.sh $(APT_PACKAGES)

services:
	@scripts/ensure-services.sh

demo: setup system-deps
	@scripts/demo.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy server hmi

unit: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest

test: setup system-deps services lint typecheck unit

# The frozen programs (PyInstaller, cached in build/bundles by input hash), the one-file console,
# dist/iiot-platform_<version>_<arch>.deb, and the Windows installer compiled around stand-ins.
dist: setup system-deps
	$(BIN)/python -m installers.build all

bench: setup services
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info .demo build dist
