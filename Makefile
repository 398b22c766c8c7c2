# pneumo-edge: `make run` and `make test` work on a fresh clone (they create the venv
# and install mosquitto with apt-get when it is missing and that is possible).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-runtime
MSTAMP  := $(VENV)/.installed-models
PIP     := $(BIN)/python -m pip -q --disable-pip-version-check
APT_ENSURE := sh deploy/apt-ensure.sh

.PHONY: venv venv-models venv-floor run test test-floor test-fast bench mosquitto openjpeg chromium hospital-tools test-broker-tier clean fuzz

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
	@$(APT_ENSURE) required 'command -v mosquitto || test -x /usr/sbin/mosquitto' \
	  'mosquitto (the MQTT broker) is needed' mosquitto

# libopenjp2 for glymur's reduced-resolution JPEG 2000 decoding (edge/decode/j2k.py);
# without it the runtime decodes JPEG 2000 at full size and logs that once.
openjpeg:
	@$(APT_ENSURE) optional 'ldconfig -p | grep -q libopenjp2' \
	  'JPEG 2000 decodes at full size' libopenjp2-7

# Debian's Chromium for the display's browser tests (Playwright drives it; nothing
# is downloaded by Playwright itself). Without it those tests skip.
chromium:
	@$(APT_ENSURE) optional 'test -x /usr/bin/chromium || command -v chromium' \
	  "the display's browser tests will skip" chromium

# Orthanc (a real PACS) and dcmtk (storescu/echoscu, the cart's side) for the DICOM tests;
# those tests skip where these cannot be installed. The tests start their own Orthanc on
# free loopback ports; the package's system service is not used.
hospital-tools:
	@$(APT_ENSURE) optional 'test -x /usr/sbin/Orthanc || command -v Orthanc' 'the PACS tests will skip' orthanc
	@$(APT_ENSURE) optional 'test -x /usr/bin/storescu' 'the DICOM network tests will skip' dcmtk

# The appliance on its embedded defaults: bundled models on ONNX Runtime, a local
# mosquitto on 127.0.0.1:1883 (started if none is listening), ./capture, ./state.
run: venv mosquitto openjpeg
	$(BIN)/pneumo-edge run --config config/edge.yaml --start-broker --with-display

test: venv-models mosquitto chromium openjpeg hospital-tools
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
	tests/test_appliance.py tests/test_engine_sidecar.py tests/test_buffers.py tests/test_doctor.py \
	tests/test_cli.py tests/test_localbroker.py tests/test_web_*.py tests/test_attacks_*.py tests/test_inference_threads.py tests/test_films_in_flight.py \
	tests/test_gate.py tests/test_gate_appliance.py tests/test_preprocess_window.py
# edge reads device profiles too (engine precision); one copy of each test helper module.
RUNTIME_TESTS += tests/test_build_engine_profiles.py tests/test_helpers_import.py
RUNTIME_TESTS += tests/test_dicom_*.py tests/test_pacs_*.py tests/test_fleet_*.py
RUNTIME_TESTS += tests/test_postprocess_exact.py
RUNTIME_TESTS += tests/test_warmup_film.py tests/test_parity_columns.py tests/test_allocator.py tests/test_after_thread.py tests/test_pipeline_one_graph.py tests/test_polarity.py
venv-floor: $(FSTAMP)
$(FSTAMP): requirements/floor-py38.txt
	@test -x $(FLOOR)/bin/python || $(PY) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip -q --disable-pip-version-check install -r requirements/floor-py38.txt \
	  pytest onnx==1.14.1 psutil
	@touch $@

test-floor: venv-floor mosquitto openjpeg hospital-tools
	@echo "runtime tests on the dependency floor:"; $(FLOOR)/bin/python -m pip list 2>/dev/null | \
	  grep -iE '^(numpy|pydicom|pynetdicom|opencv-python-headless|paho-mqtt|onnxruntime|pylibjpeg.*|PyYAML|glymur) '
	PYTHONPATH=$(CURDIR) $(FLOOR)/bin/python -m pytest -q -p no:cacheprovider $(RUNTIME_TESTS)

# The appliance and the display against RabbitMQ's MQTT plugin (a clustering broker):
# ~15 s to start, so marked `rabbitmq` and kept out of `make test`; CI runs it (.ci/run).
test-broker-tier: venv mosquitto
	@$(APT_ENSURE) required 'command -v rabbitmq-server || test -x /usr/sbin/rabbitmq-server' \
	  'the broker-tier tests need it' rabbitmq-server
	$(BIN)/pytest -q -m rabbitmq tests/test_fleet_rabbitmq.py

# Without torch: the runtime's own tests only.
test-fast: venv mosquitto
	$(BIN)/pytest -q -m "not models"

# Fuzz the decoder (atheris/libFuzzer) for FUZZ_SECONDS; the seed corpus is made at run
# time. Any input that raises something other than a DecodeError, or runs out of memory,
# is written to ./crash-* / ./oom-*. Not part of `make test`.
FUZZ_SECONDS ?= 120
fuzz: venv
	$(PIP) install -e ".[fuzz]"
	PYTHONPATH=$(CURDIR) $(BIN)/python tests/fuzz_decode.py -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048

# The developer's bench (bench/): needs torch for the naive baseline, hence venv-models.
bench: venv-models mosquitto openjpeg
	$(BIN)/python -m bench --config config/edge.yaml

clean:
	rm -rf $(VENV) $(FLOOR) capture state bench-results .pytest_cache
