# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel on machines without an NVIDIA driver; the normal torch build otherwise.
# Override: make test TORCH_SPEC='torch==2.5.1'
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 'torch>=2.1' || echo 'torch==2.13.*')
DEMO_DATA ?= data/synth
RUNS_NAME ?= demo
RUNS ?= runs/$(RUNS_NAME)
DEMO_CONFIG ?= configs/synth_edge.yaml
# The demo's shorter schedule (the adaptation table runs the config's 1,500/1,000/1,000 and a 1,000-update
# mean teacher): half the updates of each phase and two thirds of the source phase's, to stay within 15 minutes
DEMO_ITERS ?= {source: 1000, vat: 500, vst: 500}
DEMO_MT_ITERS ?= 250
BENCH_OUT ?= benchmarks/results
# the adaptation table's val videos: the demo's generator (same seed, same train clips) with 48 val clips
TABLE_VAL ?= data/synth_val48

.PHONY: rehearsal install test test-compat test-integration demo lint bench bench-adaptation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest -q

# The suite again on the OpenCV 4.x / NumPy 1.x that Jetson images ship (JetPack 6: OpenCV 4.8),
# in its own environment: opencv-python (5.x) and the headless 4.8 build must not share one.
COMPAT_VENV ?= .venv-compat
COMPAT_PINS ?= "numpy<2" "opencv-python-headless==4.8.1.78"
test-compat:
	test -x $(COMPAT_VENV)/bin/python || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)" $(COMPAT_PINS) onnxruntime onnx onnxscript \
		typer rich pyyaml matplotlib pytest
	$(COMPAT_VENV)/bin/python -m pip install -q --no-deps -e .
	$(COMPAT_VENV)/bin/python -c "import cv2, numpy; print('OpenCV', cv2.__version__, 'NumPy', numpy.__version__)"
	$(COMPAT_VENV)/bin/python -m pytest -q -p no:cacheprovider

# vsda-infer as a user runs it, not in CI (docs/deploy.md): a real RTSP server (gst-rtsp-server through the
# system python3-gi, H.264 on 127.0.0.1, started and stopped by the tests), ffmpeg-written files of every codec,
# and a real full disk (a 1 MB tmpfs). Installs its Debian packages when missing; needs root and apt-get
# (skipped with a message otherwise). The case table goes to $(INTEGRATION_TABLE).
INTEGRATION_DEBS ?= ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
INTEGRATION_TABLE ?= runs/integration/cases.md
INTEGRATION_PROBE := /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); \
	gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None); \
	assert Gst.ElementFactory.find('x264enc')" 2>/dev/null && command -v ffmpeg >/dev/null
test-integration: install
	@if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "SKIPPED make test-integration: it needs root and apt-get (Debian/Ubuntu) to install $(INTEGRATION_DEBS) and to mount a tmpfs"; \
		exit 0; \
	fi; \
	$(INTEGRATION_PROBE) || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends $(INTEGRATION_DEBS); } && \
	VSDA_INTEGRATION=1 VSDA_INTEGRATION_TABLE=$(INTEGRATION_TABLE) $(BIN)/python -m pytest -q -p no:cacheprovider \
		-s tests/integration

lint: install
	$(BIN)/ruff check .

# The main job end to end on the synthetic benchmark: generate it, score a colour-only
# baseline, train source -> VAT -> VST and the mean-teacher phase 2 from the same VAT (DEMO_ITERS and
# DEMO_MT_ITERS updates), print the table,
# export VST to ONNX (FP32/FP16/INT8), stream the target-val videos through vsda-infer, and draw the
# before/after picture (source-only, VAT+VST, mean teacher). Re-running continues finished work.
demo: install
	test -f $(DEMO_DATA)/summary.json || $(BIN)/vsda-train synth $(DEMO_DATA) --seed 0
	$(BIN)/vsda-train colour-baseline $(DEMO_DATA) --pred-out $(RUNS)/colour_pred --json $(RUNS)/colour_baseline.json
	$(BIN)/vsda-train eval --pred $(RUNS)/colour_pred --gt cityscapes-vps:$(DEMO_DATA)/target --split val --json $(RUNS)/colour_eval.json
	$(BIN)/vsda-train adapt -c $(DEMO_CONFIG) --set "optim.phase_iters=$(DEMO_ITERS)" --name $(RUNS_NAME) --resume
	$(BIN)/vsda-train vst -c $(DEMO_CONFIG) --set vst.teacher=ema --set "optim.phase_iters={vst: $(DEMO_MT_ITERS)}" \
		--init $(RUNS)/vat/last.pt --name $(RUNS_NAME)/mt --resume
	$(BIN)/vsda-train report $(RUNS)/source $(RUNS)/vat $(RUNS)/vst $(RUNS)/mt --json $(RUNS)/table.json
	$(BIN)/vsda-export $(RUNS)/vst/last.pt -o $(RUNS)/export/model.onnx --fp16 --int8 --calib cityscapes-seq:$(DEMO_DATA)/oracle
	$(BIN)/vsda-infer cityscapes-vps:$(DEMO_DATA)/target --model $(RUNS)/export/model.onnx --smooth none --no-show --report $(RUNS)/infer/report.json
	$(BIN)/vsda-train picture "source-only=$(RUNS)/source/last.pt" "VAT+VST=$(RUNS)/vst/last.pt" "VAT+mean teacher=$(RUNS)/mt/last.pt" --data cityscapes-vps:$(DEMO_DATA)/target -o $(RUNS)/before_after.png

# Every benchmark suite on this machine (after the demo, whose model and data they use):
# JSON, Markdown and PNG per suite into $(BENCH_OUT). The 3-seed adaptation table is
# `make bench-adaptation` (33 runs on 48 val videos, about 95 minutes on 2 cores).
bench: demo
	$(BIN)/python -m benchmarks formats --compile --out $(BENCH_OUT)
	$(BIN)/python -m benchmarks stream --out $(BENCH_OUT)
	$(BIN)/python -m benchmarks accuracy --out $(BENCH_OUT)
	$(BIN)/python -m benchmarks train --out $(BENCH_OUT)
	$(BIN)/python -m benchmarks metrics --out $(BENCH_OUT)

# The real configs (DeepLabV2-R101, DDRNet-23-slim) end to end on a full-resolution synthetic tree in the
# released layouts, a few iterations each on CPU: flow, source, VAT, VST (1 process and 2 gloo ranks), eval,
# export, vsda-infer. Prints and writes a table of wall time, peak RSS and disk per step (about an hour on 2 cores).
rehearsal: install
	$(BIN)/python -m benchmarks rehearsal --root runs/rehearsal --out $(BENCH_OUT)

bench-adaptation: demo
	test -f $(TABLE_VAL)/summary.json || $(BIN)/vsda-train synth $(TABLE_VAL) --seed 0 --target-val-clips 48
	$(BIN)/python -m benchmarks.adaptation --seeds 0,1,2 --jobs 2 --set run.threads=1 --out $(BENCH_OUT) \
		--set data.val=cityscapes-vps:$(TABLE_VAL)/target

clean:
	rm -rf $(VENV) $(COMPAT_VENV) runs data/synth $(TABLE_VAL) .pytest_cache
