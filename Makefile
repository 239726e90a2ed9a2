# Two entry points for people: `make demo` and `make test`. Both set up what they need
# (virtual environment, Python packages) and are safe to run again.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench lock clean system screenshots deploy-check

# Servers the tests and the demo run for real, the browser the console is tested in, postfix (its smtp-sink, the benchmarks' SMTP server)
# and prometheus (its promtool tests the alert rules). Installed from Debian's archive when
# missing (needs root, as on CI and the project's machines).
system:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/share/fonts/truetype/wqy/wqy-microhei.ttc >/dev/null 2>&1 || missing="$$missing fonts-wqy-microhei"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v nft >/dev/null 2>&1 || missing="$$missing nftables"; \
	test -x /usr/sbin/smtp-sink || missing="$$missing postfix"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install$$missing"; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "dunning needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: system $(STAMP)
	$(BIN)/dunning demo

# axe-core for the console's accessibility checks, from the npm registry, as locked.
AXE := tests/browser/node_modules/axe-core/axe.min.js
$(AXE): tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund --silent
	touch $(AXE)

# Two pytest workers, a test file each at a time (its module's servers stay in one
# worker): most tests wait on real servers and subprocesses, so two halve the time.
test: system $(STAMP) $(AXE) lint
	$(BIN)/python -m pytest -n 2 --dist loadfile

# Style, types (mypy --strict, as pyproject.toml configures) and DESIGN.md's import
# directions (import-linter contracts in pyproject.toml). `make test` runs it first.
lint: $(STAMP)
	$(BIN)/ruff check worker channels schedules tests bench
	$(BIN)/mypy worker channels schedules
	$(BIN)/lint-imports --no-cache  # its cache has kept a moved module's old imports

# What runs in production, checked by the tools production uses: the alert rules by promtool over
# synthetic series, the dashboard against the documented metrics, the Kubernetes manifests against
# their schemas, compose against the Compose spec, the units by systemd-analyze, the Dockerfile by
# hadolint and its steps as the image's user. `make test` runs it too.
deploy-check: system $(STAMP)
	$(BIN)/python -m pytest -q tests/test_deploy_checks.py

# The README's pictures of the console, taken by the tests' browser from the demo's log.
screenshots: system $(STAMP)
	$(BIN)/python tests/browser/screenshots.py

bench: $(STAMP)
	$(BIN)/python bench/decide.py

# Refresh the pinned versions after changing dependencies in pyproject.toml.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet '.[test]'
	.venv-lock/bin/python -m pip freeze --exclude dunning > constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
