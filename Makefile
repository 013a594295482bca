# The two commands a new user runs: `make demo` and `make test`. Each sets itself up in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
export TF_CPP_MIN_LOG_LEVEL ?= 2

DEMO_DATA := data/synth
DEMO_TRAIN_FRAMES := 600
DEMO_TEST_FRAMES := 40

.PHONY: setup test demo clean

setup: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

test: setup
	$(PY) -m pytest -q tests

$(DEMO_DATA)/nyu_data.zip:
	$(PY) data.py synth --out $(DEMO_DATA) --train $(DEMO_TRAIN_FRAMES) --test $(DEMO_TEST_FRAMES)

demo: setup $(DEMO_DATA)/nyu_data.zip
	$(PY) data.py inspect $(DEMO_DATA)

clean:
	rm -rf runs outputs
