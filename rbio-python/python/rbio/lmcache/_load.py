"""rbio's load step for LMCache's ``RawBlockCore``: one ``rbio.bringup`` call in place of
select, parse, apply and validate, then the result handed to the core in its own structures.

The result is LMCache's: the entries LMCache keeps and drops (unreadable headers dropped, as
LMCache drops them), its free slots in the order its allocator takes them, its ``next_slot``,
checkpoint sequence and dirty flag. Where LMCache's own result would be unsafe, rbio's rule
holds and LMCache's log says so: two entries naming one slot (LMCache keeps both, or frees
a slot a kept entry still owns), and kept or freed slots at or past ``next_slot`` (LMCache
would hand them out twice). If rbio cannot bring the device up at all, LMCache's own load
step runs instead, with a warning.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import ModuleType
from typing import Any

import rbio

#: The states in which a checkpoint entry passed LMCache's apply rules and was then dropped
#: by validation: LMCache appends their slots to the free list after the never-used ones.
_DROPPED_BY_VALIDATION = frozenset({"stale", "unreadable"})


def bringup_options(core: Any) -> dict[str, Any]:
    """``rbio.bringup`` keywords for the device and configuration ``core`` was opened with."""
    if core.use_uring_cmd:
        engine = "nvme"
    elif core.io_engine == "io_uring":
        engine = "uring"
    else:
        engine = "posix"
    return {
        "block_align": core.block_align,
        "header_bytes": core.header_bytes,
        "slot_bytes": core.slot_bytes,
        "meta_total_bytes": core.meta_total_bytes,
        "capacity_bytes": core.capacity_bytes,
        "meta_magic": core.meta_magic_text,
        "meta_version": core.meta_version,
        "namespace": core.key_namespace,
        "engine": engine,
        "direct": core.use_odirect,
        "device_path": core.device_path,
        "verify": core.meta_verify_on_load,
        "drop_unreadable": True,
    }


def make_load_step(module: ModuleType, lmcache_load_step: Callable[[Any], None]):
    """The replacement for ``module.RawBlockCore._load_checkpoint_from_device``.

    ``lmcache_load_step`` is LMCache's own, run when rbio cannot bring the device up.
    """
    logger = module.logger

    def _load_checkpoint_from_device(core: Any) -> None:
        """Loads the newest valid checkpoint through ``rbio.bringup`` (rbio.lmcache.install)."""
        started = time.perf_counter()
        try:
            report = rbio.bringup(core.device_path, **bringup_options(core))
        except Exception as error:  # any refusal: LMCache's own load step decides instead
            logger.warning(
                "rbio: bringup of %s failed (%s: %s); LMCache loads the checkpoint itself",
                core.device_path,
                type(error).__name__,
                error,
            )
            core._rbio_report = None
            lmcache_load_step(core)
            return
        core._rbio_report = report
        hand_over(core, report, module, logger)
        logger.info(
            "rbio: bringup of %s with %s in %.3fs",
            core.device_path,
            bringup_options(core)["engine"],
            time.perf_counter() - started,
        )

    _load_checkpoint_from_device.__rbio__ = True
    return _load_checkpoint_from_device


def hand_over(core: Any, report: Any, module: ModuleType, logger: Any) -> None:
    """Gives ``core`` the index, free list, ``next_slot`` and checkpoint state of ``report``."""
    checkpoint = report.checkpoint
    if checkpoint is None:
        logger.info("RawBlockCore: no valid on-device metadata checkpoint found")
        return
    if report.ignored:
        logger.warning(
            "RawBlockCore: metadata payload rejected by checks (rbio: %s)", report.ignored
        )
        return
    for warning in report.warnings:
        logger.warning("rbio: %s", warning)
    # The entries not simply kept, in checkpoint order.
    outcomes = report.entries
    shared = [o for o in outcomes if o.get("reason_code") == "duplicate_slot"]
    if shared:
        logger.warning(
            "rbio: %d checkpoint entries name a slot another entry owns; each slot keeps the "
            "one entry its header names and stays in use (LMCache alone would keep both or "
            "free the slot while an entry still owns it)",
            len(shared),
        )
    with collector_paused():
        index = build_index(core, module, report.index)
    free_slots = lmcache_free_order(
        report.free_slots, dropped_slots(core, outcomes), report.next_slot
    )
    dirty = any(
        o.get("state") in _DROPPED_BY_VALIDATION or o.get("reason_code") == "duplicate_slot"
        for o in outcomes
    )
    with core._lock:
        core._next_slot = int(report.next_slot)
        core._free_slots = free_slots
        core._free_slots_by_placement_id.clear()
        core._slot_placement_ids.clear()
        core._index.clear()
        core._index.update(index)
        core._lock_refcnt.clear()
        core._meta_dirty_total = 1 if dirty else 0
        core._meta_persisted = 0
    core._meta_seq = int(checkpoint["seq"])
    dropped = sum(1 for o in outcomes if o.get("state") in _DROPPED_BY_VALIDATION)
    if dropped:
        logger.warning(
            "RawBlockCore dropped %d stale metadata entries after slot-header validation",
            dropped,
        )
    logger.info(
        "RawBlockCore loaded checkpoint (entries=%d next_slot=%d seq=%d device=%s)",
        len(core._index),
        core._next_slot,
        core._meta_seq,
        core.device_path,
    )


def dropped_slots(core: Any, outcomes: Iterable[dict[str, Any]]) -> list[int]:
    """Slots of the entries validation dropped, in checkpoint order."""
    return [
        (int(o["offset"]) - core._data_base_offset) // core.slot_bytes
        for o in outcomes
        if o.get("state") in _DROPPED_BY_VALIDATION and o.get("offset") is not None
    ]


def lmcache_free_order(
    free_slots: Sequence[int], dropped: Sequence[int], next_slot: int
) -> dict[int, None]:
    """rbio's free slots in the order LMCache's core holds them.

    LMCache lists the slots below ``next_slot`` that no applied entry names, ascending, then
    appends each slot validation freed, in index order; its allocator pops from the end.
    Only slots rbio found free are listed, so an owned slot or one at or past ``next_slot``
    is never handed out.
    """
    free = set(free_slots)
    freed_by_validation = {slot: None for slot in dropped if slot in free and slot < next_slot}
    ordered = {slot: None for slot in sorted(free) if slot not in freed_by_validation}
    ordered.update(freed_by_validation)
    return ordered


def build_index(core: Any, module: ModuleType, index: Iterable[Sequence[Any]]) -> dict:
    """The core's index (key -> ``_Entry``) from rbio's index tuples, with the tensor
    metadata converted as LMCache converts checkpoint entries. Positional arguments follow
    the field order ``_compat`` checked."""
    entry_class = module._Entry
    metadata_class = module.DiskCacheMetadata
    torch_size = module.torch.Size
    convert = _MetadataConverter(core, module)
    dtype_of, fmt_of, positions_of = convert.dtype, convert.fmt, convert.cached_positions
    device_path = core.device_path
    entries = {}
    for key, offset, size, shape, dtype, fmt, positions in index:
        entries[key] = entry_class(
            offset,
            size,
            metadata_class(
                f"{device_path}@{offset}",
                size,
                None if shape is None else torch_size(shape),
                dtype_of(key, dtype),
                None if positions is None else positions_of(positions),
                fmt_of(fmt),
                0,
            ),
        )
    return entries


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector while inside: allocating hundreds of
    thousands of objects otherwise runs full collections again and again (at 100k entries,
    3 to 10 times the work of building the index itself)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


class _MetadataConverter:
    """Checkpoint tensor metadata to LMCache's types, memoised where the result is immutable
    and depends on the value alone (the entries of a cache share a few dtypes and formats)."""

    def __init__(self, core: Any, module: ModuleType):
        self._core = core
        self._torch = module.torch
        self._formats = module.MemoryFormat
        self._dtypes: dict[Any, Any] = {}
        self._fmts: dict[Any, Any] = {}
        # Legacy keys carry their dtype: without a usable dtype name it comes from the key.
        self._dtype_from_key = core.key_namespace == "legacy"

    def dtype(self, key: str, dtype_name: Any) -> Any:
        """The torch dtype LMCache recovers for this entry (its own method decides)."""
        try:
            by_name = self._dtypes[dtype_name]
        except KeyError:
            by_name = self._dtype_by_name(dtype_name)
        except TypeError:  # an unhashable name: no memo
            return self._core._recover_checkpoint_dtype(str(key), dtype_name)
        if by_name is None and self._dtype_from_key:
            return self._core._recover_checkpoint_dtype(str(key), dtype_name)
        return by_name

    def _dtype_by_name(self, dtype_name: Any) -> Any:
        """The dtype ``dtype_name`` gives whatever the key (legacy keys are asked with an
        empty key, which names no dtype), memoised."""
        dtype = self._dtypes[dtype_name] = self._core._recover_checkpoint_dtype("", dtype_name)
        return dtype

    def fmt(self, fmt_name: Any) -> Any:
        """The ``MemoryFormat`` member of that name, else ``UNDEFINED``."""
        try:
            return self._fmts[fmt_name]
        except (KeyError, TypeError):
            pass
        members = self._formats.__members__
        fmt = (
            members[fmt_name]
            if isinstance(fmt_name, str) and fmt_name in members
            else self._formats.UNDEFINED
        )
        try:
            self._fmts[fmt_name] = fmt
        except TypeError:
            pass
        return fmt

    def cached_positions(self, positions: Any) -> Any:
        """A new ``torch.long`` tensor (tensors are mutable: never shared)."""
        return self._torch.tensor(positions, dtype=self._torch.long)
