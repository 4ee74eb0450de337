"""Which LMCache is installed, and whether rbio knows its raw_block load step.

``install()`` changes LMCache only where it has checked that LMCache is a release rbio was
built against: the ``lmcache`` distribution's version must be one of ``SUPPORTED_VERSIONS``,
and, to replace the load step, the source of every ``RawBlockCore`` method that step runs or
fills must hash to the fingerprint recorded here. Anything else is refused with
``InstallError`` before LMCache is touched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import inspect
from collections.abc import Mapping
from types import ModuleType

#: ``lmcache`` releases whose raw_block core rbio interoperates with.
SUPPORTED_VERSIONS = ("0.5.6", "0.5.7rc2")

#: Where each release keeps its raw_block core module (0.5.7rc2 moved it).
CORE_MODULES = {
    "0.5.6": "lmcache.v1.storage_backend.raw_block.core",
    "0.5.7rc2": "lmcache.v1.distributed.l2_adapters.raw_block.core",
}

#: The ``RawBlockCore`` methods the load step consists of, calls, or whose structures it
#: fills; rbio's replacement stands in for all of them at once, so any change to one is a
#: load step rbio does not know.
LOAD_STEP_METHODS = (
    "__init__",
    "_ensure_capacity_and_layout",
    "_load_checkpoint_from_device",
    "_select_latest_checkpoint",
    "_read_meta_header",
    "_load_meta_payload",
    "apply_loaded_state",
    "_apply_loaded_state",
    "_is_valid_checkpoint_entry",
    "_recover_checkpoint_dtype",
    "_validate_loaded_entries",
    "_is_stale_header",
    "_append_free_slot_locked",
    "_allocate_slot_locked",
    "_offset_to_slot",
)

#: SHA-256 of those methods' source in the supported releases (identical in both).
LOAD_STEP_FINGERPRINTS = frozenset(
    {
        "2b9f2dec6b135f4094f6b14d3877966cb058a666b80b88feb1dbeb965f52831b",
    }
)

#: What the replacement load step takes from the core's module.
MODULE_NAMES = ("RawBlockCore", "_Entry", "DiskCacheMetadata", "MemoryFormat", "torch", "logger")

#: The fields of the core's index entries and their metadata, in order (the replacement
#: load step builds them positionally).
ENTRY_FIELDS = ("offset", "size", "meta")
METADATA_FIELDS = ("path", "size", "shape", "dtype", "cached_positions", "fmt", "pin_count")


class InstallError(RuntimeError):
    """``rbio.lmcache.install()`` refused: LMCache is missing or not a version rbio knows."""


def lmcache_version() -> str:
    """The installed ``lmcache`` distribution's version.

    Raises:
        InstallError: LMCache is not installed, or is a version rbio does not support.
    """
    try:
        version = importlib.metadata.version("lmcache")
    except importlib.metadata.PackageNotFoundError:
        raise InstallError(
            "lmcache is not installed: rbio.lmcache.install() supports lmcache "
            f"{' and '.join(SUPPORTED_VERSIONS)}"
        ) from None
    if version not in SUPPORTED_VERSIONS:
        raise InstallError(
            f"lmcache {version} is installed, rbio.lmcache.install() supports only "
            f"{' and '.join(SUPPORTED_VERSIONS)}; LMCache was left unchanged"
        )
    return version


def core_module(version: str) -> ModuleType:
    """Imports the raw_block core module of LMCache ``version`` (this imports torch).

    Raises:
        InstallError: The module cannot be imported.
    """
    name = CORE_MODULES[version]
    try:
        return importlib.import_module(name)
    except Exception as error:  # LMCache's own imports can fail in many ways
        raise InstallError(
            f"lmcache {version}: cannot import {name} ({type(error).__name__}: {error}); "
            "LMCache was left unchanged"
        ) from error


def load_step_fingerprint(core_class: type, replaced: Mapping[str, object]) -> str:
    """SHA-256 over the source of ``LOAD_STEP_METHODS`` of ``core_class``, in that order.

    ``replaced`` holds LMCache's own method for any that rbio has already replaced.

    Raises:
        InstallError: A method is missing or its source cannot be read.
    """
    digest = hashlib.sha256()
    for name in LOAD_STEP_METHODS:
        method = replaced.get(name, core_class.__dict__.get(name))
        if method is None:
            raise InstallError(
                f"RawBlockCore has no method {name}: its load step is not the one rbio "
                "knows; LMCache was left unchanged"
            )
        try:
            source = inspect.getsource(method)
        except (OSError, TypeError) as error:
            raise InstallError(
                f"cannot read the source of RawBlockCore.{name} ({error}) to check its "
                "load step; LMCache was left unchanged"
            ) from error
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(source.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def dataclass_fields(cls: type) -> tuple[str, ...]:
    """The field names of a dataclass, in order; empty for anything else."""
    if not dataclasses.is_dataclass(cls):
        return ()
    return tuple(field.name for field in dataclasses.fields(cls))


def check_load_step(module: ModuleType, version: str, replaced: Mapping[str, object]) -> None:
    """Checks that ``module``'s ``RawBlockCore`` loads checkpoints the way rbio expects.

    ``replaced`` holds LMCache's own method for any that rbio has already replaced.

    Raises:
        InstallError: The core class, its entry type or its load step differ.
    """
    missing = [name for name in MODULE_NAMES if not hasattr(module, name)]
    if missing:
        raise InstallError(
            f"lmcache {version}: {module.__name__} has no {', '.join(missing)}; "
            "LMCache was left unchanged"
        )
    core_class = module.RawBlockCore
    for name, expected in (("_Entry", ENTRY_FIELDS), ("DiskCacheMetadata", METADATA_FIELDS)):
        fields = dataclass_fields(getattr(module, name))
        if fields != expected:
            raise InstallError(
                f"lmcache {version}: {name} has fields {fields}, rbio expects {expected}; "
                "LMCache was left unchanged"
            )
    fingerprint = load_step_fingerprint(core_class, replaced)
    if fingerprint not in LOAD_STEP_FINGERPRINTS:
        raise InstallError(
            f"lmcache {version}: RawBlockCore's load step differs from the one rbio knows "
            f"(fingerprint {fingerprint[:16]}); install(bringup=True) refused, LMCache was "
            "left unchanged"
        )
