# The two entry points: `make serve` (gateway on the embedded defaults) and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: serve test venv services

serve: $(STAMP)
	$(VENV)/bin/keel serve

test: $(STAMP)
	bash scripts/services.sh
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

venv: $(STAMP)

# Re-run the install whenever the project's own dependency files change.
$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(PYTHON) $(VENV)
	touch $(STAMP)
