"""What the LMCache-in-the-loop tests and the LMCache benchmark share: real LMCache cores on
image files, keys and payloads, the core's recovered state as plain values, and switching
between LMCache's own native module and rbio's.
"""

from __future__ import annotations

import contextlib
import json
import fcntl
import hashlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# LMCache writes Prometheus files on import unless told where.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/rbio-lmcache-prometheus")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

import torch  # noqa: E402
from lmcache.v1.memory_management import (  # noqa: E402
    MemoryFormat,
    MemoryObjMetadata,
    TensorMemoryObj,
)

import rbio.lmcache  # noqa: E402
from rbio.lmcache import _compat  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "fixtures" / "lmcache-0.5.6"

#: The core module of the installed LMCache (0.5.6 and 0.5.7rc2 keep it in different places).
core_module = _compat.core_module(_compat.lmcache_version())
RawBlockCore = core_module.RawBlockCore
RawBlockCoreConfig = core_module.RawBlockCoreConfig
_key_codec = __import__(core_module.__name__.rsplit(".", 1)[0] + ".key_codec", fromlist=["x"])

MIB = 1 << 20
#: The layout of the tests' images: LMCache's defaults, with a small metadata region.
BLOCK_ALIGN = 4096
HEADER_BYTES = 4096
META_TOTAL_BYTES = 4 * MIB

#: Which native module a core opens its device with: LMCache's own, rbio's after
#: ``install()``, or rbio's with rbio's load step after ``install(bringup=True)``.
MODULES = ("lmcache", "rbio", "rbio-bringup")


@contextlib.contextmanager
def using(module: str) -> Iterator[None]:
    """Cores opened inside use ``module`` (one of ``MODULES``); LMCache's own afterwards."""
    assert module in MODULES, module
    if module == "lmcache":
        rbio.lmcache.uninstall()
    else:
        rbio.lmcache.install(bringup=module == "rbio-bringup")
    try:
        yield
    finally:
        rbio.lmcache.uninstall()


def config(
    path: str | os.PathLike,
    *,
    io_engine: str,
    slot_bytes: int,
    verify: bool = True,
    odirect: bool = True,
    meta_total_bytes: int = META_TOTAL_BYTES,
) -> Any:
    """A ``RawBlockCoreConfig`` for an image at ``path`` (checkpoints only when asked)."""
    return RawBlockCoreConfig(
        device_path=str(path),
        capacity_bytes=0,
        block_align=BLOCK_ALIGN,
        header_bytes=HEADER_BYTES,
        slot_bytes=slot_bytes,
        use_odirect=odirect,
        enable_zero_copy=False,
        meta_total_bytes=meta_total_bytes,
        meta_magic=b"LMCIDX01",
        meta_version=1,
        meta_checkpoint_interval_sec=3600,
        meta_idle_quiet_ms=1000,
        meta_enable_periodic=False,
        meta_verify_on_load=verify,
        io_engine=io_engine,
    )


def open_core(core_config: Any) -> Any:
    """A ``RawBlockCore`` on ``core_config``'s device: bringup runs in the constructor."""
    return RawBlockCore(core_config, key_namespace="object")


def sparse_image(path: str | os.PathLike, size_bytes: int) -> Path:
    """An image file of ``size_bytes`` zero bytes, taking no disk space until written."""
    with open(path, "wb") as image:
        image.truncate(size_bytes)
    return Path(path)


def key(index: int, model: str = "rbio/test-model") -> Any:
    """The object-namespace key of entry ``index`` (LMCache's key encoding and identity)."""
    chunk_hash = hashlib.blake2b(index.to_bytes(8, "little"), digest_size=16).digest()
    encoded = f"{model.replace('/', '%2F')}@{0:#010x}@0@{chunk_hash.hex()}"
    return _key_codec.RawBlockKeySpec(
        encoded=encoded,
        slot_identity=_key_codec.slot_identity_from_encoded_key(encoded, "object"),
    )


def payload(index: int, size_bytes: int) -> bytes:
    """Entry ``index``'s payload: distinct per entry and per byte position."""
    block = hashlib.sha256(index.to_bytes(8, "little")).digest()
    return (block * (size_bytes // len(block) + 1))[:size_bytes]


def memory_obj(data: bytes | int, cached_positions: list[int] | None = None) -> Any:
    """A CPU ``TensorMemoryObj`` of uint8 holding ``data`` (or that many zero bytes)."""
    tensor = (
        torch.zeros(data, dtype=torch.uint8)
        if isinstance(data, int)
        else torch.frombuffer(bytearray(data), dtype=torch.uint8)
    )
    metadata = MemoryObjMetadata(
        shape=torch.Size([tensor.numel()]),
        dtype=torch.uint8,
        address=0,
        phy_size=tensor.numel(),
        ref_count=1,
        fmt=MemoryFormat.BINARY,
        cached_positions=(
            None if cached_positions is None else torch.tensor(cached_positions)
        ),
    )
    return TensorMemoryObj(tensor, metadata, None)


def state(core: Any) -> dict[str, Any]:
    """What the core recovered and will allocate from, as plain values: the index in order
    with every metadata field, the free list in the order it is kept, ``next_slot``, the
    checkpoint sequence and whether a checkpoint is due."""
    with core._lock:
        index = [
            (
                encoded_key,
                entry.offset,
                entry.size,
                entry.meta.path,
                entry.meta.size,
                None if entry.meta.shape is None else tuple(entry.meta.shape),
                str(entry.meta.dtype),
                None if entry.meta.fmt is None else entry.meta.fmt.name,
                None
                if entry.meta.cached_positions is None
                else entry.meta.cached_positions.tolist(),
                entry.meta.pin_count,
            )
            for encoded_key, entry in core._index.items()
        ]
        return {
            "index": index,
            "free_slots": list(core._free_slots),
            "next_slot": core._next_slot,
            "seq": core._meta_seq,
            "dirty": core._meta_dirty_total > core._meta_persisted,
            "lock_refcounts": dict(core._lock_refcnt),
        }


def device_module(core: Any) -> str:
    """Whose device class the core opened its device with: "rbio" or "lmcache"."""
    device_class = type(core.raw_device())
    if device_class is rbio.lmcache.RawBlockDevice:
        return "rbio"
    native = sys.modules.get("lmcache_rust_raw_block_io.lmcache_rust_raw_block_io")
    assert device_class is getattr(native, "RawBlockDevice", None), device_class
    return "lmcache"


def lmcache_version() -> str:
    """The installed lmcache release."""
    return importlib.metadata.version("lmcache")


class LogRecords(logging.Handler):
    """Collects what LMCache's raw_block core logs (its logger does not propagate)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self) -> list[str]:
        """The warnings logged, as messages."""
        return [r.getMessage() for r in self.records if r.levelno >= logging.WARNING]


@contextlib.contextmanager
def core_log() -> Iterator[LogRecords]:
    """Records LMCache's raw_block core log while inside."""
    handler = LogRecords()
    core_module.logger.addHandler(handler)
    try:
        yield handler
    finally:
        core_module.logger.removeHandler(handler)


#: The fixtures record this device_path, and LMCache ignores a checkpoint recorded under
#: another path: they are brought up under it.
FIXTURE_DEVICE_DIR = Path("/srv/raw_block")


@contextlib.contextmanager
def fixture_device(name: str, workdir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Unpacks fixture ``name`` into ``workdir`` and makes it reachable at the path its
    checkpoints record, for as long as inside (a lock keeps concurrent runs apart).
    Yields that path and the manifest."""
    with tarfile.open(FIXTURES / f"{name}.tar.gz") as archive:
        archive.extractall(workdir, filter="data")
    manifest = json.loads((workdir / f"{name}.img.manifest.json").read_text())
    recorded = Path(manifest["device_path_in_checkpoint"])
    assert recorded.parent == FIXTURE_DEVICE_DIR, recorded
    FIXTURE_DEVICE_DIR.mkdir(parents=True, exist_ok=True)
    with open(FIXTURE_DEVICE_DIR / ".rbio-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.move(workdir / f"{name}.img", recorded)
        try:
            yield recorded, manifest
        finally:
            recorded.unlink(missing_ok=True)


def drop_caches() -> None:
    """Drops the page cache (root), so the next reads come from the disk."""
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as caches:
        caches.write("3\n")
