"""Benchmarks for provisioner: ``make bench`` (or ``.ci/netns .venv/bin/python -m bench --help``)."""
