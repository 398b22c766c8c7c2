# pneumo-edge: `make run` and `make test` work on a fresh clone (they create the venv
# and install mosquitto with apt-get when it is missing and that is possible).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-runtime
MSTAMP  := $(VENV)/.installed-models
PIP     := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: venv venv-models venv-floor run test test-floor test-fast bench mosquitto clean

venv: $(STAMP)
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -e ".[cpu,dev]"
	@touch $@

# torch & co. for models/ (training, export, their tests); pinned, see requirements/.
venv-models: $(MSTAMP)
$(MSTAMP): $(STAMP) requirements/models-constraints.txt
	$(PIP) install -e ".[cpu,dev,models]" -c requirements/models-constraints.txt
	@touch $@

mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing mosquitto (apt-get)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
	  echo "mosquitto (the MQTT broker) is needed: install it with 'sudo apt-get install mosquitto'" >&2; exit 1; \
	fi

# The appliance on its embedded defaults: bundled models on ONNX Runtime, a local
# mosquitto on 127.0.0.1:1883 (started if none is listening), ./capture, ./state.
run: venv mosquitto
	$(BIN)/pneumo-edge run --config config/edge.yaml --start-broker

test: venv-models mosquitto
	$(BIN)/vermin -t=3.8- --no-tips --violations --eval-annotations edge build_engine
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-floor

# The runtime's tests against the lowest dependency versions we declare (the ones
# that exist for Python 3.8 on JetPack 5, e.g. pydicom 2.4): there is no 3.8 here,
# so this plus vermin is how the 3.8 floor is kept. onnx 1.14 is test tooling that
# onnxruntime 1.15's quantiser still understands.
FLOOR      := .venv-floor
FSTAMP     := $(FLOOR)/.installed
RUNTIME_TESTS := tests/test_decode*.py tests/test_capture_*.py tests/test_config.py \
	tests/test_logsetup.py tests/test_postprocess.py tests/test_pipeline.py tests/test_alerts_*.py \
	tests/test_gate.py tests/test_gate_appliance.py tests/test_preprocess_window.py \
	tests/test_appliance.py tests/test_engine_sidecar.py tests/test_buffers.py tests/test_doctor.py
venv-floor: $(FSTAMP)
$(FSTAMP): requirements/floor-py38.txt
	@test -x $(FLOOR)/bin/python || $(PY) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip -q --disable-pip-version-check install -r requirements/floor-py38.txt \
	  pytest onnx==1.14.1 psutil
	@touch $@

test-floor: venv-floor mosquitto
	@echo "runtime tests on the dependency floor:"; $(FLOOR)/bin/python -m pip list 2>/dev/null | \
	  grep -iE '^(numpy|pydicom|opencv-python-headless|paho-mqtt|onnxruntime|pylibjpeg.*|PyYAML) '
	PYTHONPATH=$(CURDIR) $(FLOOR)/bin/python -m pytest -q -p no:cacheprovider $(RUNTIME_TESTS)

# Without torch: the runtime's own tests only.
test-fast: venv mosquitto
	$(BIN)/pytest -q -m "not models"

bench: venv mosquitto
	$(BIN)/pneumo-edge bench --config config/edge.yaml

clean:
	rm -rf $(VENV) $(FLOOR) capture state bench-results .pytest_cache
