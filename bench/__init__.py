"""Benchmarks: each module is a script, ``.venv/bin/python bench/<name>.py [--quick]``."""
