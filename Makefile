# medlit: `make demo` runs the main job on generated data, `make test` runs the tests.
# Both create .venv and install what is missing first (quick when already installed).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medlit-installed
GENERATED := data/generated
# Every training, recipe, cross-validation and sweep target takes DATA=/path/to/dataset (used as it is: no lookup
# in SHARED, no download) and ARGS="--trainer.max_time 00:00:10:00 ..." (appended to each training command).
DATA ?=
ARGS ?=
SHARED ?= ../shared/data
CLS := $(PY) -m lesion_cls
SEG := $(PY) -m volume_seg

.PHONY: setup demo demo-data demo-cls demo-seg report wandb-sweep sweep-cls sweep-seg sweep-ham sweep-la bench test unit smoke test-all lint real-la real-hippocampus real-ham cv-la cv-ham cv-hippocampus \
        train-cls-ce train-cls-focal train-seg-bce train-seg-dice train-seg-dice-aug clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo-data: setup
	$(PY) -m lesion_cls.synthetic --out $(GENERATED)/ham10000 --n-images 1200
	$(PY) -m volume_seg.synthetic --layout la --out $(GENERATED)/la_h5 --n-train 12 --n-test 4

## The main job on generated data: both seed experiments, CPU-sized (runs in runs/demo/), then the report.
demo: demo-cls demo-seg
	$(MAKE) --no-print-directory report

demo-cls: demo-data
	$(CLS) fit --config experiments/cls_ce.yaml --config experiments/demo/cls.yaml
	$(CLS) fit --config experiments/cls_ce_focal.yaml --config experiments/demo/cls.yaml

demo-seg: demo-data
	$(SEG) fit --config experiments/seg_bce.yaml --config experiments/demo/seg.yaml
	$(SEG) fit --config experiments/seg_dice.yaml --config experiments/demo/seg.yaml
	$(SEG) fit --config experiments/seg_dice_aug.yaml --config experiments/demo/seg.yaml

## report.md + report.html from the newest run of each experiment under RUNS (default runs/demo).
RUNS ?= runs/demo
report: setup
	$(PY) -m common.studies.report --root $(RUNS) --out $(RUNS)/report

## Offline sweeps (no W&B server). Without DATA they run on generated data with the CPU overlays;
## MAX_RUNS=N runs only the first N configurations; WORKERS=N runs N workers on this machine (sharing the runs);
## ARGS goes to every run (after `--`). Re-running resumes where a sweep stopped.
SWEEP_ARGS = $(if $(MAX_RUNS),--max-runs $(MAX_RUNS)) $(if $(WORKERS),--workers $(WORKERS))
SWEEP_FIT = $(if $(ARGS),-- $(ARGS))
sweep-cls: $(if $(DATA),setup,demo-data)
	$(if $(DATA),@$(given_root))
	$(PY) -m common.studies.sweep experiments/sweeps/cls_loss.yaml $(SWEEP_ARGS) \
		$(if $(DATA),--data-root "$(DATA)",--config experiments/demo/cls.yaml --sweep-dir runs/demo/sweeps/cls_loss) $(SWEEP_FIT)

sweep-seg: $(if $(DATA),setup,demo-data)
	$(if $(DATA),@$(given_root))
	$(PY) -m common.studies.sweep experiments/sweeps/seg_loss_aug.yaml $(SWEEP_ARGS) \
		$(if $(DATA),--data-root "$(DATA)",--config experiments/demo/seg.yaml --sweep-dir runs/demo/sweeps/seg_loss_aug) $(SWEEP_FIT)

## The seed's two questions on real data (about an hour each on 2 CPU cores; resumable): HAM10000 cross-entropy
## vs + focal loss over 3 seeds, LA-16 BCE vs Dice vs Dice + rotate/flip over 2 seeds. The data in ../shared/data
## when it is there, else downloaded first into data/ (needs internet). comparison.md/comparisons.csv in the sweep dir.
## DATA, ARGS, MAX_RUNS and WORKERS as above.
sweep-ham: setup
	@$(call shared_root,lesion_cls,ham10000,HAM10000_metadata.csv,ham10000_200x150,data/HAM10000); \
	$(PY) -m common.studies.sweep experiments/sweeps/ham10000_loss.yaml --data-root "$$root" \
		--sweep-dir runs/sweeps/ham10000_loss $(SWEEP_ARGS) $(SWEEP_FIT)

sweep-la: setup
	@$(call shared_root,volume_seg,la,labeled16.list,la_uamt_h5,data/LA); \
	$(PY) -m common.studies.sweep experiments/sweeps/la16_loss_aug.yaml --data-root "$$root" \
		--sweep-dir runs/sweeps/la16_loss_aug $(SWEEP_ARGS) $(SWEEP_FIT)

## Online sweeps (a W&B account): prints the `wandb sweep` and `wandb agent` commands for a sweep file, e.g.
## make wandb-sweep SWEEP=ham10000_loss DATA=../shared/data/ham10000_200x150  (SWEEP: a file in experiments/sweeps)
wandb-sweep: setup
	@test -n "$(SWEEP)" || { echo "error: SWEEP is not set; e.g. make wandb-sweep SWEEP=cls_loss DATA=/path/to/data" >&2; exit 2; }
	@$(PY) -m common.studies.wandb_sweep experiments/sweeps/$(SWEEP).yaml $(if $(DATA),--data-root $(DATA))

## Benchmarks: our hand-written pieces against the library or naive reference, measured in the same run.
bench: setup
	$(PY) -m benchmarks.bench_surface_metrics
	$(PY) -m benchmarks.bench_pixel_cache
	$(PY) -m benchmarks.bench_loader
	$(PY) -m benchmarks.bench_step
	$(PY) -m benchmarks.bench_sliding_window
	$(PY) -m benchmarks.bench_bootstrap

## Tests (about 6 minutes on 2 cores): everything but `slow`: the unit layer, one end-to-end run of each capability
## (tiny data, W&B offline, a W&B agent, DDP, report), real-data tests where ../shared/data exists. `make test-all`: all.
test: setup
	$(PY) -m pytest -m "not slow"

## The unit layer (about 1.5-2 minutes): every test but those that train through the CLI (e2e, smoke) or are slow.
unit: setup
	$(PY) -m pytest -m "not e2e and not smoke and not slow"

smoke: setup
	$(PY) -m pytest -m smoke

test-all: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

## The seed's configurations on real data: DATA=/path/to/dataset, else data/HAM10000 or data/LA, downloaded first when
## missing (needs internet); without network one error line names the download command, and no run dir is made.
## ARGS adds or overrides settings.
# DATA given: $$root is that folder as it is (no lookup, no download); one error line when it is not a folder
define given_root
root="$(DATA)"; if [ ! -d "$$root" ]; then echo "error: DATA=$$root: no such folder" >&2; exit 2; fi
endef

# $(call dataset_root,<task>,<dataset>,<file that marks it>,<folder>): sets $$root
define dataset_root
$(if $(DATA),$(given_root),$(call download_root,$(1),$(2),$(3),$(4)))
endef

define download_root
root=$(4); if [ ! -e "$$root/$(3)" ]; then \
	  log=$$(mktemp); if ! $(PY) -m $(1).download $(2) --out "$$root" 2>"$$log"; then \
	    echo "error: $$root: no dataset, and downloading it failed ($$(tail -n 1 "$$log" | sed 's/^error: //')); run \`$(PY) -m $(1).download $(2) --out $$root\` where there is internet, or pass DATA=/path/to/dataset" >&2; \
	    rm -f "$$log"; exit 2; fi; rm -f "$$log"; fi
endef

# $(call shared_root,<task>,<dataset>,<file or folder that marks it>,<folder in SHARED>,<folder in data/>): sets
# $$root: DATA, else the copy in SHARED when it is there, else data/<folder> after the (checked, resumable) download
define shared_root
$(if $(DATA),$(given_root),root=$(SHARED)/$(4); if [ ! -e "$$root/$(3)" ]; then root=$(5); \
		$(PY) -m $(1).download $(2) --out $$root || exit 2; fi)
endef

train-cls-ce: setup
	@$(call dataset_root,lesion_cls,ham10000,HAM10000_metadata.csv,data/HAM10000); \
	$(CLS) fit --config experiments/cls_ce.yaml --data.root "$$root" $(ARGS)

train-cls-focal: setup
	@$(call dataset_root,lesion_cls,ham10000,HAM10000_metadata.csv,data/HAM10000); \
	$(CLS) fit --config experiments/cls_ce_focal.yaml --data.root "$$root" $(ARGS)

train-seg-bce: setup
	@$(call dataset_root,volume_seg,la,train.list,data/LA); \
	$(SEG) fit --config experiments/seg_bce.yaml --data.root "$$root" $(ARGS)

train-seg-dice: setup
	@$(call dataset_root,volume_seg,la,train.list,data/LA); \
	$(SEG) fit --config experiments/seg_dice.yaml --data.root "$$root" $(ARGS)

train-seg-dice-aug: setup
	@$(call dataset_root,volume_seg,la,train.list,data/LA); \
	$(SEG) fit --config experiments/seg_dice_aug.yaml --data.root "$$root" $(ARGS)

## Real-data recipes (runs in runs/real/): DATA=/path/to/dataset, else the data in ../shared/data when it is there,
## else downloaded first into data/ (needs internet; checked, resumable). Each prints its test metrics and run_dir.
## ARGS adds or overrides settings, e.g. make real-la ARGS="--trainer.max_time 00:00:10:00 --run.experiment la16_10min".
real-la: setup
	@$(call shared_root,volume_seg,la,labeled16.list,la_uamt_h5,data/LA); \
	$(SEG) fit --config experiments/recipes/la16.yaml --data.root "$$root" $(ARGS)

real-hippocampus: setup
	@$(call shared_root,volume_seg,hippocampus,labels,hippocampus_msd,data/hippocampus); \
	$(SEG) fit --config experiments/recipes/hippocampus.yaml --data.root "$$root" $(ARGS)

real-ham: setup
	@$(call shared_root,lesion_cls,ham10000,HAM10000_metadata.csv,ham10000_200x150,data/HAM10000); \
	$(CLS) fit --config experiments/recipes/ham10000.yaml --data.root "$$root" $(ARGS)

## Cross-validation (python -m common.studies.cv): 5 folds of the recipe, out-of-fold predictions and decisions, the fold
## ensemble tested on the test set; runs/cv/<name>/summary.md. Resumable: rerun to continue.
## LA-16: 5 x 16 minutes, validating every 4th epoch (the last weights are tested; validating 3-4 whole volumes every
## epoch took a third of the budget); HAM10000: the 10-minute recipe, 5 x 9.5 minutes (56 minutes in all, with the
## tests and the ensemble's); hippocampus: the recipe's 13.5 training minutes shared by 5 folds (5 x 2.7 minutes).
## DATA and ARGS as for the recipes; ARGS goes to every fold's training (and may set --folds or --cv-dir).
cv-la: setup
	@$(call shared_root,volume_seg,la,labeled16.list,la_uamt_h5,data/LA); \
	$(PY) -m common.studies.cv volume_seg --config experiments/recipes/la16.yaml --data.root "$$root" \
		--trainer.max_time 00:00:16:00 --trainer.check_val_every_n_epoch 4 --folds 5 --cv-dir runs/cv/la16 $(ARGS)

cv-ham: setup
	@$(call shared_root,lesion_cls,ham10000,HAM10000_metadata.csv,ham10000_200x150,data/HAM10000); \
	$(PY) -m common.studies.cv lesion_cls --config experiments/recipes/ham10000.yaml \
		--config experiments/recipes/ham10000_10min.yaml --data.root "$$root" \
		--trainer.max_time 00:00:09:30 --folds 5 --cv-dir runs/cv/ham10000 $(ARGS)

cv-hippocampus: setup
	@$(call shared_root,volume_seg,hippocampus,labels,hippocampus_msd,data/hippocampus); \
	$(PY) -m common.studies.cv volume_seg --config experiments/recipes/hippocampus.yaml --data.root "$$root" \
		--trainer.max_time 00:00:02:42 --folds 5 --cv-dir runs/cv/hippocampus $(ARGS)

clean:
	rm -rf runs/demo $(GENERATED)
