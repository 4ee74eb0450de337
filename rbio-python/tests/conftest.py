"""Shared fixtures: the repository's LMCache fixtures unpacked into tmp_path, the `rbio`
command to compare against, and devices on every engine."""

import json
import os
import pathlib
import shutil
import subprocess
import tarfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "lmcache-0.5.6"
# The layout both fixtures were written with (fixtures/lmcache-0.5.6/README.md).
FIXTURE_LAYOUT = dict(block_align=4096, header_bytes=4096, meta_total_bytes=4 << 20)


def unpack(name: str, into: pathlib.Path):
    """Unpacks fixture `name` (c1000 or c2000kv); returns (image path, manifest dict)."""
    with tarfile.open(FIXTURES / f"{name}.tar.gz") as archive:
        archive.extractall(into, filter="data") if hasattr(tarfile, "data_filter") else archive.extractall(into)
    image = into / f"{name}.img"
    manifest = json.loads((into / f"{name}.img.manifest.json").read_text())
    return image, manifest


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


def cli_flags(options: dict) -> list:
    """The command-line flags for bringup()/inspect() keywords."""
    flags = []
    for keyword, value in options.items():
        flag = "--" + keyword.replace("_", "-")
        if keyword == "verify":
            flags += [] if value else ["--no-verify"]
        elif value is True:
            flags.append(flag)
        elif value is False:
            continue
        else:
            flags += [flag, str(value)]
    return flags
