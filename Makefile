PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

DEMO_DATA := demo-data
ARTIFACTS := artifacts
HOST := 127.0.0.1
PORT := 8000

.PHONY: install test demo demo-train bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Reinstall only when the package metadata changes.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	# --no-compile: pip would byte-compile every file of torch & co. (about a minute on 2 cores); Python compiles
	# what is imported, when it is imported.
	$(BIN)/pip install -q --no-compile -e ".[train,serve,glove,ray,dev]"
	touch $(STAMP)

# make demo needs only training and serving: not ray, kubectl or the test tools (the full set is ~2.4 GB).
$(DEMO_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-compile -e ".[train,serve]"
	touch $(DEMO_STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# Synthetic data -> all five models trained briefly -> bundles -> the service on $(HOST):$(PORT).
demo: demo-train
	@scripts/demo_curls.sh $(HOST) $(PORT)
	$(BIN)/recserve serve --artifacts $(ARTIFACTS) --host $(HOST) --port $(PORT)

demo-train: $(DEMO_STAMP)
	@echo "==> writing synthetic data to $(DEMO_DATA)/"
	$(BIN)/recserve data synthetic --dest $(DEMO_DATA)
	@echo "==> training and exporting all five models into $(ARTIFACTS)/ (about 2.5 minutes)"
	@# The interaction models on their own recipes: a minute more than 3 epochs each, for rankings that have
	@# learnt (test NDCG@10 on this data, gru4recf 0.46, bert4rec 0.32, convncf 0.06, against 0.24, 0.08,
	@# 0.02 after 3 epochs); the news models 3 epochs.
	for model in convncf gru4recf bert4rec; do \
		$(BIN)/recserve train --model $$model --data $(DEMO_DATA)/interactions --out $(ARTIFACTS) || exit 1; done
	for model in nrms plm_nrms; do \
		$(BIN)/recserve train --model $$model --data $(DEMO_DATA)/mind --out $(ARTIFACTS) --epochs 3 || exit 1; done
	@echo "==> each run adds a version per model; keep the newest two: $(BIN)/recserve prune --artifacts $(ARTIFACTS) --keep 2"

# Benchmarks: run alone (two torch processes on 2 cores distort every figure). See docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python bench/train_vs_recbole.py --models convncf gru4recf bert4rec --epochs 3 --batch-size 2048 \
		--data ../shared/data/ml-100k --out bench/out/train_vs_recbole.json --md bench/out/train_vs_recbole.md
	$(BIN)/python bench/nrms_mind.py --data ../shared/data/mind --lr 5e-4 --out bench/out/nrms_5e-4.json
	$(BIN)/python bench/serve_load.py --artifacts $(ARTIFACTS) --out bench/out/serve_load.json
	$(BIN)/python bench/ddp_ml100k.py --model gru4recf --epochs 2 --seeds 2020 1 2 --data ../shared/data/ml-100k \
		--out bench/out/ddp_ml100k.json

clean:
	rm -rf $(VENV) artifacts demo-data
