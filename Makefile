# The two commands a new user runs: `make demo` and `make test`. Each sets itself up in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
CHROMEDRIVER := /usr/bin/chromedriver

# The demo: synthetic NYU-format data, a SqueezeNet v1.1 transfer model from ImageNet weights pretrained on it for
# 1000 steps on the CPU (recipes/demo.txt, which the benchmark's quality runs also train with; DEMO_MINUTES caps
# each stage on a slower machine), then fine-tuned for 1000 steps, keeping a moving average of its weights, on the
# real RGB-D captures in ../shared/real_captures mixed with the synthetic rooms (recipes/finetune.txt; the
# captures' held-out blocks validate), its evaluation, and its depth maps of the real NYU photographs in
# ../shared/nyu_examples. Each real-data step is skipped, saying so, where its folder is absent: without the
# captures the synthetic model is the demo's model, as before.
DEMO_DATA := data/synth
DEMO_MINUTES := 20
DEMO_RUN := runs/demo
DEMO_OUT := outputs/demo
# SqueezeNet v1.1's ImageNet weights (keras-squeezenet's file; ../shared/weights/README.md says where it comes
# from). Without it the demo trains the same model from random weights, and says so.
SQUEEZENET_H5 := ../shared/weights/squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5
DEMO_WEIGHTS := $(if $(wildcard $(SQUEEZENET_H5)),,--encoder-weights none)
NYU_EXAMPLES := ../shared/nyu_examples
# Nine real RGB-D frames with sensor depth (NYU, TUM, SUN RGB-D, Kinect v2; its README gives their units and
# provenance): demo and compare also score their models there, the synthetic-to-real gap in one table.
REAL_RGBD := ../shared/real_rgbd/pairs
# 339 real RGB-D frames of four captures (a kitchen, an office, a desk, tabletops; its README gives units and
# licences), read as one dataset: captures.py holds out blocks of every capture as its 'val' split. The iPhone's
# LiDAR close-ups of a desk (0.14-0.58 m, nearer than anything the real test frames hold) are left out: with them
# the fine-tuned model put whole rooms too near (docs/real-captures.md).
# (A&B: the frames in both splits; quoted, as & is the shell's.)
CAPTURES_TRAIN := all-but-val&all-but-iphone_lidar_office
CAPTURES_VAL := val&all-but-iphone_lidar_office
REAL_CAPTURES := ../shared/real_captures
CAPTURES_MIX := --data $(DEMO_DATA):val=none --data '$(REAL_CAPTURES):train=$(CAPTURES_TRAIN),val=$(CAPTURES_VAL)'
# With the captures the synthetic pretraining is a run of its own; without them it is the demo's model.
DEMO_PRETRAIN := $(if $(wildcard $(REAL_CAPTURES)),runs/demo-synthetic,$(DEMO_RUN))

# The seed's comparison, here: the UNet from scratch against transfer models (SqueezeNet v1.1 from ImageNet
# weights and from random weights, VGG16 from HED's weights), each with the same wall-clock budget on this
# machine, scored on the synthetic test split and on the real frames. SqueezeNet's ImageNet weights are the
# keras-squeezenet file in ../shared/weights (its README says where it comes from); without it that run is skipped.
COMPARE_MINUTES := 6
COMPARE_RUNS := runs/compare
COMPARE_OUT := outputs/compare
COMPARE_TRAIN := $(PY) train.py --data $(DEMO_DATA) --epochs 1000 --steps-per-epoch 25 --time-budget $(COMPARE_MINUTES)
# The seed's question on real data: the UNet and SqueezeNet from ImageNet weights, each fine-tuned from its
# synthetic run on the real captures (mixed as the demo's) with the same wall-clock budget again.
COMPARE_FINETUNE := $(PY) train.py @recipes/finetune.txt $(CAPTURES_MIX) --epochs 1000 --time-budget $(COMPARE_MINUTES)
# --model flags for the compare runs that finished (a shell expression: the runs exist only once trained)
COMPARE_MODELS := $$(for run in unet squeezenet-imagenet squeezenet-random vgg16-hed unet-captures squeezenet-imagenet-captures; do \
	[ -f $(COMPARE_RUNS)/$$run/model.keras ] && echo --model $(COMPARE_RUNS)/$$run/model.keras; done)

.PHONY: setup test demo compare notebook clean

setup: $(STAMP) $(CHROMEDRIVER)

# Debian's Chromium and its WebDriver, for tests/test_app.py's run of the web page in a real headless browser:
# apt-get installs them where chromedriver is missing and we are root; elsewhere the test skips and says why.
$(CHROMEDRIVER):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; \
	else echo "no $@ and not root: tests/test_app.py's browser test will skip (apt-get install chromium chromium-driver)"; fi

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

# The suite in TEST_WORKERS processes (pytest-xdist; a worker steals tests from a busy one).
TEST_WORKERS ?= 2

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal tests

# Rendered again whenever the renderer changed since, so a demo never trains on a stale set.
$(DEMO_DATA)/nyu_data.zip: $(wildcard synth/*.py)
	$(PY) -m synth --out $(DEMO_DATA)

demo: setup $(DEMO_DATA)/nyu_data.zip
	rm -rf $(DEMO_RUN) $(DEMO_PRETRAIN)
	@$(if $(DEMO_WEIGHTS),echo "no $(SQUEEZENET_H5): training SqueezeNet from random weights instead of ImageNet's")
	$(PY) train.py @recipes/demo.txt $(DEMO_WEIGHTS) --data $(DEMO_DATA) --time-budget $(DEMO_MINUTES) --out $(DEMO_PRETRAIN)
	@if [ -d $(REAL_CAPTURES) ]; then \
		$(PY) train.py @recipes/finetune.txt --init-from $(DEMO_PRETRAIN)/model.keras $(CAPTURES_MIX) --time-budget $(DEMO_MINUTES) --out $(DEMO_RUN); \
	else echo "no $(REAL_CAPTURES): no fine-tuning on real captures; the demo's model is the synthetic one"; fi
	$(PY) evaluate.py --model $(DEMO_RUN)/model.keras --data $(DEMO_DATA) --out $(DEMO_OUT)
	@if [ -d $(NYU_EXAMPLES) ]; then \
		$(PY) predict.py --model $(DEMO_RUN)/model.keras $(NYU_EXAMPLES) --out $(DEMO_OUT)/nyu_examples; \
	else echo "no $(NYU_EXAMPLES): skipping the real-photograph predictions"; fi
	@if [ -d $(REAL_RGBD) ]; then \
		$(PY) evaluate.py --model $(DEMO_RUN)/model.keras --data $(REAL_RGBD) --median-scaling --out $(DEMO_OUT)/real_rgbd; \
	else echo "no $(REAL_RGBD): skipping the evaluation on real RGB-D frames"; fi
	@echo "demo done: table in $(DEMO_OUT)/table.md (real frames: $(DEMO_OUT)/real_rgbd/table.md), figures in $(DEMO_OUT)/, model in $(DEMO_RUN)/model.keras"

compare: setup $(DEMO_DATA)/nyu_data.zip
	rm -rf $(COMPARE_RUNS)
	$(COMPARE_TRAIN) --model unet --base-filters 16 --lr 1e-3 --out $(COMPARE_RUNS)/unet
	@if [ -f $(SQUEEZENET_H5) ]; then \
		$(COMPARE_TRAIN) --model transfer --encoder squeezenet --encoder-weights $(SQUEEZENET_H5) --out $(COMPARE_RUNS)/squeezenet-imagenet; \
	else echo "no $(SQUEEZENET_H5): skipping SqueezeNet from ImageNet weights"; fi
	$(COMPARE_TRAIN) --model transfer --encoder squeezenet --encoder-weights none --out $(COMPARE_RUNS)/squeezenet-random
	$(COMPARE_TRAIN) --model transfer --encoder vgg16 --encoder-weights hed --out $(COMPARE_RUNS)/vgg16-hed
	@if [ -d $(REAL_CAPTURES) ]; then for run in unet squeezenet-imagenet; do \
		[ -f $(COMPARE_RUNS)/$$run/model.keras ] && $(COMPARE_FINETUNE) --init-from $(COMPARE_RUNS)/$$run/model.keras --out $(COMPARE_RUNS)/$$run-captures; \
	done; else echo "no $(REAL_CAPTURES): skipping the fine-tuning on real captures"; fi
	$(PY) evaluate.py --data $(DEMO_DATA) --out $(COMPARE_OUT) $(if $(wildcard $(NYU_EXAMPLES)),--photos $(NYU_EXAMPLES)) $(COMPARE_MODELS)
	@if [ -d $(REAL_RGBD) ]; then \
		$(PY) evaluate.py --data $(REAL_RGBD) --median-scaling --out $(COMPARE_OUT)/real_rgbd $(COMPARE_MODELS); \
	else echo "no $(REAL_RGBD): skipping the evaluation on real RGB-D frames"; fi

# JupyterLab refuses to start as root (how Colab and most containers run) unless given --allow-root: added only
# there. Headless, without a browser: $(VENV)/bin/jupyter execute (nbclient, in requirements.txt; README).
notebook: setup
	$(PY) -m pip install --quiet jupyterlab
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/explore_depth.ipynb

clean:
	rm -rf runs outputs
