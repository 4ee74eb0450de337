"""Shared fixtures: the repository's LMCache fixtures unpacked into tmp_path, the `rbio`
command to compare against, and devices on every engine."""

import json
import os
import pathlib
import shutil
import subprocess

import pytest

from rbio_support import FIXTURE_LAYOUT, REPO, unpack


@pytest.fixture(params=["c1000", "c2000kv"])
def fixture_image(request, tmp_path):
    image, manifest = unpack(request.param, tmp_path)
    layout = dict(FIXTURE_LAYOUT, slot_bytes=manifest["config"]["slot_bytes"])
    return image, manifest, layout


@pytest.fixture(scope="session")
def rbio_cli():
    """The `rbio` command: $RBIO_CLI, else built here with cargo."""
    given = os.environ.get("RBIO_CLI")
    if given:
        return given
    if shutil.which("cargo") is None:
        pytest.skip("neither RBIO_CLI nor cargo is available to run the rbio command")
    subprocess.run(["cargo", "build", "-q", "-p", "rbio-cli"], cwd=REPO, check=True)
    metadata = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=REPO, check=True, capture_output=True, text=True,
    )
    return str(pathlib.Path(json.loads(metadata.stdout)["target_directory"]) / "debug" / "rbio")
