.PHONY: run test lint clean

# Install mcpd into .venv and run it on its embedded defaults (SQLite, local orchestrator).
run:
	@scripts/venv.sh
	.venv/bin/mcpd

# Install everything the tests need, start PostgreSQL and the test cluster, run the suite.
test:
	scripts/test.sh

lint:
	@scripts/venv.sh test
	.venv/bin/ruff check mcpctl tests bench && .venv/bin/ruff format --check mcpctl tests bench
	.venv/bin/mypy && .venv/bin/lint-imports --no-cache

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
