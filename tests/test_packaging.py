"""What the package declares about itself: its licence (with the file), the setuptools that can build that
form, its project URLs, and the metadata an installed copy carries."""

from __future__ import annotations

import importlib.metadata
import json
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_licence_is_mit_with_its_text() -> None:
    project = PYPROJECT["project"]
    assert (project["license"], project["license-files"]) == ("MIT", ["LICENSE"])
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) ")
    assert "Permission is hereby granted, free of charge, to any person obtaining a copy" in text
    # An SPDX `license` string with `license-files` (PEP 639) needs setuptools 77; 68 refuses it.
    assert PYPROJECT["build-system"]["requires"] == ["setuptools>=77"]


def test_the_project_urls_are_placeholders_that_name_no_real_host() -> None:
    urls = PYPROJECT["project"]["urls"]
    assert sorted(urls) == ["Documentation", "Issues", "Source"]
    assert urls["Documentation"].endswith("/docs")
    assert all(url.startswith("https://example.invalid/userstream") for url in urls.values())


def test_an_installed_copy_of_this_checkout_carries_the_metadata() -> None:
    distribution = importlib.metadata.distribution("userstream")
    origin = distribution.read_text("direct_url.json")
    if origin is None or json.loads(origin).get("url") != ROOT.as_uri():
        pytest.skip(f"the installed userstream is not this checkout's ({origin}): `make setup` installs it")
    metadata = distribution.metadata
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert sorted(metadata.get_all("Project-URL") or []) == sorted(
        f"{name}, {url}" for name, url in PYPROJECT["project"]["urls"].items()
    )
    assert metadata["Version"] == PYPROJECT["project"]["version"]
