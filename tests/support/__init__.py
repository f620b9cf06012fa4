"""Helpers shared by test modules (and conftests) in different folders.

The suite runs with `--import-mode=importlib`, so a test module or a conftest cannot import another; what
several of them need lives here instead, in a package that `pythonpath = ["tests"]` (pyproject.toml) puts on
sys.path: `from support.processes import ...`. Helpers and shared test data only (examples.py holds the
exchange documents' vectors): no fixtures, no tests.
"""
