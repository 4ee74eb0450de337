"""A real LMCache `RawBlockCore` on rbio's device does what it does on LMCache's own module:
`put_many`, `load_many_into`, `delete_many`, checkpoints, close and restart bringup give the
same results, the same recovered state and a byte-identical image, with the posix and the
io_uring engine; and an image written through either module reads back through the other.
"""

import hashlib
import shutil

import pytest

import lmcache_support as lm

SLOT_BYTES = 64 * 1024
IMAGE_BYTES = 32 * lm.MIB
PAYLOAD_MAX = SLOT_BYTES - lm.HEADER_BYTES
ENGINES = ("posix", "io_uring")
#: Payload sizes: tiny, unaligned, exactly aligned, and the largest a slot holds.
SIZES = [1, 100, 4095, 4096, 4097, 12_345, 32_768, PAYLOAD_MAX - 1, PAYLOAD_MAX]
FIRST, SECOND = range(0, 30), range(30, 40)


def size_of(index):
    return SIZES[index % len(SIZES)]


def positions_of(index):
    return list(range(index, index + 4)) if index % 5 == 0 else None


def objs(indices):
    return [lm.memory_obj(lm.payload(i, size_of(i)), positions_of(i)) for i in indices]


def load(core, indices):
    """Per-key results and the bytes read (None where the load failed)."""
    outs = [lm.memory_obj(size_of(i)) for i in indices]
    results = core.load_many_into([lm.key(i).encoded for i in indices], outs)
    return results, [bytes(o.byte_array) if ok else None for o, ok in zip(outs, results)]


def write_and_restart(image, io_engine):
    """The life of a cache device: writes, reads, deletes, a checkpoint, more writes into
    the freed slots, close, then a restart that recovers it all. Returns every result."""
    config = lm.config(image, io_engine=io_engine, slot_bytes=SLOT_BYTES)
    seen = {}
    core = lm.open_core(config)
    seen["device"] = lm.device_module(core)
    seen["empty"] = lm.state(core)
    seen["put_first"] = core.put_many([lm.key(i) for i in FIRST], objs(FIRST)).results
    seen["load_first"] = load(core, list(FIRST) + [99])
    seen["delete"] = core.delete_many([lm.key(i).encoded for i in (5, 6, 7, 99)])
    core.checkpoint_now()
    seen["after_checkpoint"] = lm.state(core)
    put = core.put_many([lm.key(i) for i in SECOND], objs(SECOND))
    seen["put_second"] = (put.results, put.stored_keys)
    seen["offsets"] = [core.entry_offset(lm.key(i).encoded) for i in SECOND]
    core.close()

    core = lm.open_core(config)
    seen["restarted"] = lm.state(core)
    seen["load_all"] = load(core, [*FIRST, *SECOND])
    core.close()
    return seen


def expected_loads(indices, deleted=(5, 6, 7)):
    return [None if i in deleted else lm.payload(i, size_of(i)) for i in indices]


def file_digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("io_engine", ENGINES)
def test_a_core_on_rbio_does_what_it_does_on_lmcaches_module(tmp_path, io_engine):
    image = tmp_path / "dev.img"
    runs, digests = {}, {}
    for module in ("lmcache", "rbio"):
        lm.sparse_image(image, IMAGE_BYTES)
        with lm.using(module):
            runs[module] = write_and_restart(image, io_engine)
        digests[module] = file_digest(image)
        shutil.copyfile(image, tmp_path / f"{module}.img")
    lmcache, on_rbio = runs["lmcache"], runs["rbio"]
    assert lmcache.pop("device") == "lmcache"
    assert on_rbio.pop("device") == "rbio"

    assert on_rbio == lmcache
    # And what they did is what a cache must do, not merely the same mistake twice.
    assert lmcache["put_first"] == [True] * len(FIRST)
    assert lmcache["load_first"][1] == expected_loads(list(FIRST), deleted=()) + [None]
    assert lmcache["delete"] == [True, True, True, False]
    assert lmcache["put_second"][0] == [True] * len(SECOND)
    slots_reused = {(o - lm.META_TOTAL_BYTES) // SLOT_BYTES for o in lmcache["offsets"]}
    assert {5, 6, 7} <= slots_reused
    assert len(lmcache["restarted"]["index"]) == len(FIRST) + len(SECOND) - 3
    assert lmcache["load_all"][1] == expected_loads([*FIRST, *SECOND])
    assert digests["rbio"] == digests["lmcache"]


@pytest.mark.parametrize("io_engine", ENGINES)
@pytest.mark.parametrize("writer, reader", [("lmcache", "rbio"), ("rbio", "lmcache")])
def test_an_image_written_through_one_module_reads_back_through_the_other(
    tmp_path, io_engine, writer, reader
):
    image = lm.sparse_image(tmp_path / "dev.img", IMAGE_BYTES)
    config = lm.config(image, io_engine=io_engine, slot_bytes=SLOT_BYTES)
    indices = list(FIRST)
    with lm.using(writer):
        core = lm.open_core(config)
        assert all(core.put_many([lm.key(i) for i in indices], objs(indices)).results)
        written = lm.state(core)
        core.close()
    with lm.using(reader):
        core = lm.open_core(config)
        assert lm.device_module(core) == reader
        recovered = lm.state(core)
        results, data = load(core, indices)
        core.close()
    assert recovered["index"] == written["index"]
    assert recovered["next_slot"] == written["next_slot"] == len(indices)
    assert results == [True] * len(indices)
    assert data == expected_loads(indices, deleted=())
