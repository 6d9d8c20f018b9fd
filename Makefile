# make demo : set up, then compress + decompress the bundled sample with the shipped model
# make test : set up, then run the test suite
.PHONY: demo test eval setup

.venv/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: .venv/.installed

demo: .venv/.installed
	.venv/bin/aecodec demo -o out/demo

test: .venv/.installed
	.venv/bin/python -m pytest -q

eval: .venv/.installed
	.venv/bin/python -m kodak_eval
