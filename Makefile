# `make run`: set up .venv and run the embedded default job. `make test`: set up and run the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run quickstart test bench prometheus clean

# torch/torchvision are pinned in pyproject.toml; pip takes those wheels from local files where
# they exist (this project's development machines) and from PyPI elsewhere.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The Colored Digits experiment (paper Table 5); finished stages are reused, FRESH=1 redoes them.
run: $(STAMP)
	$(BIN)/genint experiment configs/experiments/colored-digits-reference.yaml $(if $(FRESH),--fresh)

# The quickstart job: generation beside training on the embedded Ray (`genint run`).
quickstart: $(STAMP)
	$(BIN)/genint examples digits runs/quickstart/digits-imagefolder
	$(BIN)/genint run configs/quickstart.yaml

# Tests run a real Prometheus; install Debian's package when it is missing and apt is available.
prometheus:
	@command -v prometheus >/dev/null || ! command -v apt-get >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null)

# Two test processes (pytest-xdist): most slow tests wait on Ray, servers and subprocesses more than
# they compute, so two at a time on the 2-core machine take about half the time of one.
TEST_WORKERS ?= 2

test: $(STAMP) prometheus
	DS_ACCELERATOR=cpu $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

bench: $(STAMP)
	$(BIN)/python bench/shard_write.py

clean:
	rm -rf $(VENV) runs
