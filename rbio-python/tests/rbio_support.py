"""Helpers the rbio test modules import by name (a module name of their own, so the LMCache
suite's conftest beside them can never shadow it): the repository's fixtures and the
command-line flags that match bringup()'s keywords."""

import json
import pathlib
import tarfile

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
