"""`install(bringup=True)`: LMCache's load step replaced by one `rbio.bringup` call gives the
core LMCache's own result: the same index with the same metadata, the same free slots in the
order its allocator takes them, the same next_slot, checkpoint seq and dirty flag, on the
repository's LMCache 0.5.6 fixtures and on images damaged after their checkpoint, with both
engines, with and without validation. Where LMCache's own result is unsafe (two entries on one
slot, entries past next_slot) rbio's rule holds and LMCache's log says so; where rbio cannot
bring the device up, LMCache's own load step runs.
"""

import os
import shutil

import pytest

import lmcache_support as lm
import rbio

ENGINES = ("posix", "io_uring")
SLOT_BYTES = 64 * 1024
IMAGE_BYTES = 16 * lm.MIB
#: Keys written after bringup, to see which slots the core hands out next.
NEW_KEYS = range(10_000, 10_004)


def bring_up(module, config, image, pristine):
    """Brings `pristine` up at `image` through `module`, then writes NEW_KEYS; returns the
    recovered state, the slots handed out next, the warnings logged and rbio's report."""
    shutil.copyfile(pristine, image)
    with lm.using(module), lm.core_log() as log:
        core = lm.open_core(config)
        recovered = lm.state(core)
        report = getattr(core, "_rbio_report", None)
        data = [lm.memory_obj(lm.payload(i, 100)) for i in NEW_KEYS]
        assert all(core.put_many([lm.key(i) for i in NEW_KEYS], data).results)
        next_offsets = [core.entry_offset(lm.key(i).encoded) for i in NEW_KEYS]
        core.close()
    return {
        "state": recovered,
        "next_offsets": next_offsets,
        "warnings": log.warnings(),
        "report": report,
    }


def lmcache_and_rbio(config, image, pristine):
    """The same device brought up by LMCache alone and with install(bringup=True)."""
    alone = bring_up("lmcache", config, image, pristine)
    with_rbio = bring_up("rbio-bringup", config, image, pristine)
    assert alone["report"] is None
    assert with_rbio["report"] is not None, f"rbio's load step did not run: {with_rbio}"
    return alone, with_rbio


def assert_same(alone, with_rbio):
    assert with_rbio["state"] == alone["state"]
    assert with_rbio["next_offsets"] == alone["next_offsets"]


@pytest.mark.parametrize("io_engine", ENGINES)
@pytest.mark.parametrize("fixture", ["c1000", "c2000kv"])
def test_the_fixtures_come_up_as_lmcache_brings_them_up(tmp_path, fixture, io_engine):
    with lm.fixture_device(fixture, tmp_path) as (image, manifest):
        pristine = shutil.copyfile(image, tmp_path / "pristine.img")
        layout = manifest["config"]
        config = lm.config(
            image,
            io_engine=io_engine,
            slot_bytes=layout["slot_bytes"],
            meta_total_bytes=layout["meta_total_bytes"],
        )
        alone, with_rbio = lmcache_and_rbio(config, image, pristine)
    assert_same(alone, with_rbio)
    index = {entry[0]: entry for entry in with_rbio["state"]["index"]}
    assert len(index) == manifest["expected_entries_after_recovery"]
    for entry in manifest["keys"]:
        if entry["expected"] == "present":
            assert index[entry["encoded"]][1:3] == (entry["offset"], entry["payload_len"])
        else:
            assert entry["encoded"] not in index, entry
    assert with_rbio["state"]["seq"] == 2
    assert with_rbio["state"]["dirty"], "stale entries were dropped: a checkpoint is due"


def write_image(image, count=60):
    """An image LMCache wrote at `image`: `count` entries, two deleted, checkpointed."""
    lm.sparse_image(image, IMAGE_BYTES)
    with lm.using("lmcache"):
        core = lm.open_core(lm.config(image, io_engine="posix", slot_bytes=SLOT_BYTES))
        data = [lm.memory_obj(lm.payload(i, 1000 + i)) for i in range(count)]
        assert all(core.put_many([lm.key(i) for i in range(count)], data).results)
        core.delete_many([lm.key(i).encoded for i in (11, 12)])
        core.close()
    return image


def pristine_copy(image):
    """A copy of `image` that every bringup starts from (closing a core may checkpoint)."""
    pristine = image.with_suffix(".pristine")
    shutil.copyfile(image, pristine)
    return pristine


def overwrite(image, offset, data):
    fd = os.open(image, os.O_WRONLY)
    try:
        assert os.pwrite(fd, data, offset) == len(data)
        os.fsync(fd)
    finally:
        os.close(fd)


def header_offset(slot):
    return lm.META_TOTAL_BYTES + slot * SLOT_BYTES


def damage_headers(image):
    """Damage after the last checkpoint, one entry per kind; returns the damaged slots."""
    overwrite(image, header_offset(3), bytes(lm.HEADER_BYTES))  # zeroed
    overwrite(image, header_offset(8), b"LMCBLK02")  # bad magic
    overwrite(image, header_offset(20) + 16, (77).to_bytes(8, "little"))  # wrong length
    other = lm.key(40).slot_identity.to_bytes(8, "little")
    overwrite(image, header_offset(31) + 8, other)  # another key's identity
    overwrite(image, header_offset(45) + lm.HEADER_BYTES + 10, b"\xff")  # payload only
    return {3, 8, 20, 31}


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("io_engine", ENGINES)
def test_damaged_headers_are_dropped_and_freed_as_lmcache_does(tmp_path, io_engine, verify):
    image = write_image(tmp_path / "dev.img")
    damaged = damage_headers(image)
    pristine = pristine_copy(image)
    config = lm.config(image, io_engine=io_engine, slot_bytes=SLOT_BYTES, verify=verify)
    alone, with_rbio = lmcache_and_rbio(config, image, pristine)
    assert_same(alone, with_rbio)
    slots = {(e[1] - lm.META_TOTAL_BYTES) // SLOT_BYTES for e in with_rbio["state"]["index"]}
    free = with_rbio["state"]["free_slots"]
    if verify:
        assert not slots & damaged and 45 in slots
        # Never-used slots first, ascending, then those validation freed, in index order:
        # LMCache's allocator pops from the end.
        assert free == [11, 12, 3, 8, 20, 31]
        assert [(o - lm.META_TOTAL_BYTES) // SLOT_BYTES for o in with_rbio["next_offsets"]] == [
            31,
            20,
            8,
            3,
        ]
    else:
        assert damaged <= slots and free == [11, 12]
    assert with_rbio["state"]["dirty"] == verify


@pytest.mark.parametrize("io_engine", ENGINES)
def test_an_empty_device_and_an_ignored_checkpoint_come_up_empty_as_in_lmcache(
    tmp_path, io_engine
):
    empty = lm.sparse_image(tmp_path / "empty.img", IMAGE_BYTES)
    written_elsewhere = pristine_copy(write_image(tmp_path / "elsewhere.img"))
    image = tmp_path / "dev.img"
    config = lm.config(image, io_engine=io_engine, slot_bytes=SLOT_BYTES)
    for pristine in (empty, written_elsewhere):
        alone, with_rbio = lmcache_and_rbio(config, image, pristine)
        assert_same(alone, with_rbio)
        assert with_rbio["state"]["index"] == [] and with_rbio["state"]["seq"] == 0
    # The checkpoint recorded elsewhere.img as its device: LMCache and rbio both say why
    # they ignored it.
    assert any("rejected by checks" in w for w in with_rbio["warnings"])


def test_two_entries_on_one_slot_keep_the_slot_owned_and_lmcaches_log_says_so(tmp_path):
    image = write_image(tmp_path / "dev.img", count=10)
    with lm.using("lmcache"):
        core = lm.open_core(lm.config(image, io_engine="posix", slot_bytes=SLOT_BYTES))
        # A second key naming slot 3, as LMCache 0.5.6 accepts in a checkpoint.
        owner = core._index[lm.key(3).encoded]
        core._index[lm.key(500).encoded] = type(owner)(owner.offset, owner.size, owner.meta)
        core._meta_dirty_total += 1
        core.close()
    pristine = pristine_copy(image)
    config = lm.config(image, io_engine="io_uring", slot_bytes=SLOT_BYTES)
    alone, with_rbio = lmcache_and_rbio(config, image, pristine)

    owned = header_offset(3)
    assert with_rbio["state"]["index"] == alone["state"]["index"]
    assert (lm.key(3).encoded, owned) == alone["state"]["index"][3][:2]
    # LMCache dropped the impostor and freed the slot that key 3 still owns: its next write
    # would overwrite key 3. rbio keeps the slot in use.
    assert 3 in alone["state"]["free_slots"] and owned in alone["next_offsets"]
    assert 3 not in with_rbio["state"]["free_slots"] and owned not in with_rbio["next_offsets"]
    assert with_rbio["state"]["dirty"] and alone["state"]["dirty"]
    assert any("name a slot another entry owns" in w for w in with_rbio["warnings"])


def test_entries_past_next_slot_raise_next_slot_and_lmcaches_log_says_so(tmp_path):
    image = write_image(tmp_path / "dev.img", count=10)
    with lm.using("lmcache"):
        core = lm.open_core(lm.config(image, io_engine="posix", slot_bytes=SLOT_BYTES))
        core._next_slot = 6
        core._meta_dirty_total += 1
        core.close()
    pristine = pristine_copy(image)
    config = lm.config(image, io_engine="posix", slot_bytes=SLOT_BYTES)
    alone, with_rbio = lmcache_and_rbio(config, image, pristine)

    assert with_rbio["state"]["index"] == alone["state"]["index"]
    assert alone["state"]["next_slot"] == 6 and with_rbio["state"]["next_slot"] == 10
    # LMCache hands out slot 6 (key 6 owns it); rbio the first slot nobody owns.
    first = [(o - lm.META_TOTAL_BYTES) // SLOT_BYTES for o in alone["next_offsets"]]
    assert 6 in first
    assert with_rbio["next_offsets"][0] == header_offset(10)
    assert any("next_slot" in w for w in with_rbio["warnings"])


def test_when_rbio_cannot_bring_the_device_up_lmcaches_own_load_step_runs(
    tmp_path, monkeypatch
):
    image = write_image(tmp_path / "dev.img")
    damage_headers(image)
    pristine = pristine_copy(image)

    def refuse(path, **options):
        raise RuntimeError(f"{path}: no answer")

    monkeypatch.setattr(rbio, "bringup", refuse)
    config = lm.config(image, io_engine="io_uring", slot_bytes=SLOT_BYTES)
    alone = bring_up("lmcache", config, image, pristine)
    fell_back = bring_up("rbio-bringup", config, image, pristine)
    assert fell_back["report"] is None
    assert_same(alone, fell_back)
    assert any("LMCache loads the checkpoint itself" in w for w in fell_back["warnings"])
    assert any("no answer" in w for w in fell_back["warnings"])
