"""rbio.lmcache.RawBlockDevice against LMCache's class, method by method
(shared/notes/lmcache-native-api.md): results, zero-fill, bounce copies, batches larger than
the ring, per-operation failures, close with work queued, and every documented misuse."""

import mmap
import pytest

from rbio.lmcache import RawBlockDevice

SIZE = 1 << 20
ENGINES = ["posix", "io_uring"]


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "device.img"
    path.write_bytes(bytes(SIZE))
    return path


def open_device(image, engine, **kwargs):
    return RawBlockDevice(str(image), True, io_engine=engine, **kwargs)


def aligned(size):
    """A page-aligned writable buffer (an anonymous mmap)."""
    return memoryview(mmap.mmap(-1, size))


@pytest.mark.parametrize("engine", ENGINES)
def test_pwrite_then_pread_round_trips_and_pads_with_zeros(image, engine):
    device = open_device(image, engine)
    assert device.size_bytes() == SIZE
    device.pwrite_from_buffer(4096, b"\xff" * 8192)
    device.pwrite_from_buffer(4096, b"hello", payload_len=5, total_len=4096)
    raw = image.read_bytes()
    assert raw[4096:4101] == b"hello" and raw[4101:8192] == bytes(4091)
    assert raw[8192:12288] == b"\xff" * 4096
    out = bytearray(5)
    device.pread_into(4096, out, 5, total_len=4096)
    assert out == b"hello"
    device.close()


def test_o_direct_checks_alignment_and_bounces_unaligned_buffers(image):
    device = RawBlockDevice(str(image), True, use_odirect=True, io_engine="io_uring")
    with pytest.raises(ValueError, match="O_DIRECT requires aligned offset"):
        device.pwrite_from_buffer(100, b"x" * 4096)
    with pytest.raises(ValueError, match="O_DIRECT requires aligned total_len"):
        device.pwrite_from_buffer(0, b"x" * 100)
    unaligned = bytearray(4097)
    view = memoryview(unaligned)[1:]
    view[:] = b"z" * 4096
    device.pwrite_from_buffer(0, view)
    out = bytearray(10)
    device.pread_into(0, out, 10, total_len=4096)
    assert out == b"z" * 10
    direct_out = aligned(8192)
    device.pread_into(0, direct_out, 10, total_len=4096)
    assert bytes(direct_out[:4096]) == b"z" * 4096, "an aligned out gets total_len bytes as in LMCache"
    device.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_sync_misuse_raises_lmcaches_errors(image, engine):
    device = open_device(image, engine)
    with pytest.raises(ValueError, match="payload_len exceeds buffer length"):
        device.pwrite_from_buffer(0, b"abc", payload_len=4)
    with pytest.raises(ValueError, match="total_len must be >= payload_len"):
        device.pwrite_from_buffer(0, b"abc", payload_len=3, total_len=2)
    with pytest.raises(BufferError):
        device.pread_into(0, b"read-only", 4)
    with pytest.raises(ValueError, match=r"output buffer too small: cap=2 need=4"):
        device.pread_into(0, bytearray(2), 4)
    with pytest.raises(TypeError):
        device.pwrite_from_buffer(0, "text")
    with pytest.raises(BufferError):
        device.pwrite_from_buffer(0, memoryview(bytearray(16))[::2])
    with pytest.raises(OverflowError):
        device.pread_into(-1, bytearray(4), 4)
    with pytest.raises(RuntimeError, match="unexpected EOF"):
        device.pread_into(SIZE - 4, bytearray(4096), 4096)
    device.close()


def test_constructor_refuses_what_lmcache_refuses(image, tmp_path):
    with pytest.raises(ValueError, match="io_engine must be one of posix, io_uring; got aio"):
        RawBlockDevice(str(image), True, io_engine="aio")
    with pytest.raises(ValueError, match="use_uring_cmd requires use_iouring to be enabled"):
        RawBlockDevice(str(image), True, use_uring_cmd=True)
    with pytest.raises(ValueError, match="NVMe namespace character device"):
        RawBlockDevice(str(image), True, use_uring_cmd=True, io_engine="io_uring")
    with pytest.raises(FileNotFoundError):
        RawBlockDevice(str(tmp_path / "missing"), True)
    with pytest.raises(TypeError):
        RawBlockDevice(str(image))
    with pytest.raises(TypeError):
        RawBlockDevice(str(image), True, max_data_transfer_size=1 << 20)
    RawBlockDevice(str(image), True, use_iouring=True, io_engine="", iouring_queue_depth=0).close()


def test_batches_larger_than_the_ring_complete_in_order(image):
    device = open_device(image, "io_uring", iouring_queue_depth=4)
    count = 64
    writes = [bytes([i + 1]) * 100 for i in range(count)]
    batch = device.batched_write([i * 4096 for i in range(count)], writes, [4096] * count,
                                 payload_lens=[100] * count)
    ok, errors = device.wait_iouring(batch)
    assert ok == [True] * count and errors == []
    outs = [bytearray(4096) for _ in range(count)]
    read_batch = device.batched_read([i * 4096 for i in range(count)], outs, [4096] * count)
    assert read_batch == batch + 1, "one counter for reads and writes"
    ok, errors = device.wait_iouring(read_batch)
    assert ok == [True] * count
    for i, out in enumerate(outs):
        assert out[:100] == writes[i] and out[100:] == bytes(3996), i
    assert device.wait_iouring(read_batch) == ([], []), "a batch is waited for once"
    assert device.wait_iouring(12345) == ([], [])
    device.close()


def test_one_bad_operation_fails_only_itself(image):
    device = open_device(image, "io_uring")
    outs = [bytearray(4096), bytearray(4096), bytearray(4096)]
    batch = device.batched_read([0, SIZE, 8192], outs, [4096] * 3)
    ok, errors = device.wait_iouring(batch)
    assert ok == [True, False, True]
    assert errors == [(1, "RuntimeError: Unexpected short I/O: internal error")]
    device.close()


def test_batched_read_copies_min_of_cap_and_total(image):
    device = open_device(image, "io_uring")
    device.pwrite_from_buffer(0, b"\x07" * 4096)
    small = bytearray(10)
    ok, _ = device.wait_iouring(device.batched_read([0], [small], [4096]))
    assert ok == [True] and small == b"\x07" * 10
    with pytest.raises(ValueError, match="output buffer too small: cap=0 need=4096"):
        device.batched_read([0], [bytearray(0)], [4096])
    device.close()


def test_batched_write_misuse(image):
    device = open_device(image, "io_uring")
    assert device.batched_write([], [], []) == 1
    assert device.batched_read([], [], []) == 2
    with pytest.raises(ValueError, match="All vectors must have same length"):
        device.batched_write([0], [], [4096])
    with pytest.raises(ValueError, match="placement_ids must have same length as offsets"):
        device.batched_write([0], [b"x"], [1], placement_ids=[None, None])
    with pytest.raises(ValueError, match="payload_lens must have same length as offsets"):
        device.batched_write([0], [b"x"], [1], payload_lens=[])
    with pytest.raises(ValueError, match="placement_id must not be 0; use None to omit the FDP directive"):
        device.batched_write([0], [b"x"], [1], placement_ids=[0])
    with pytest.raises(ValueError, match="1..=65535"):
        device.batched_write([0], [b"x"], [1], placement_ids=[65536])
    with pytest.raises(ValueError, match="input buffer too small: cap=1 need=2"):
        device.batched_write([0], [b"x"], [2], payload_lens=[2])
    with pytest.raises(ValueError, match="total_len must be >= payload_len"):
        device.batched_write([0], [b"xy"], [1], payload_lens=[2])
    source = bytearray(b"ab" + b"\x01" * 10)
    ok, _ = device.wait_iouring(device.batched_write([0], [source], [12], placement_ids=[7], payload_lens=[2]))
    assert ok == [True]
    assert source == b"ab" + b"\x01" * 10, "the source is never modified"
    assert image.read_bytes()[:12] == b"ab" + bytes(10)
    device.close()


def test_write_uring_checks_placement_ids_and_ignores_them_off_uring_cmd(image):
    """Placement ids reach the device only on the uring_cmd (NVMe) path; elsewhere they are
    validated with LMCache's errors and the write goes through as if there were none."""
    device = open_device(image, "io_uring")
    with pytest.raises(ValueError, match="placement_id must not be 0; use None to omit the FDP directive"):
        device.write_uring(0, b"x", 1, placement_id=0)
    with pytest.raises(ValueError, match="placement_id 65536 out of range 1..=65535"):
        device.write_uring(0, b"x", 1, placement_id=65536)
    with pytest.raises(OverflowError):
        device.write_uring(0, b"x", 1, placement_id=-1)
    device.write_uring(8192, b"placed", 6, total_len=4096, placement_id=65535)
    ok, errors = device.wait_iouring(
        device.batched_write([0, 4096], [b"one", b"two"], [3, 3], placement_ids=[None, 1])
    )
    assert (ok, errors) == ([True, True], [])
    raw = image.read_bytes()
    assert raw[8192:8198] == b"placed" and raw[8198:12288] == bytes(4090)
    assert raw[0:3] == b"one" and raw[4096:4099] == b"two"
    device.close()


def test_posix_device_has_no_ring(image):
    device = open_device(image, "posix")
    assert device.wait_iouring(1) == ([], [])
    for call in (lambda: device.batched_read([0], [bytearray(1)], [1]),
                 lambda: device.batched_write([0], [b"x"], [1]),
                 lambda: device.register_fixed_buffers([4096], [4096])):
        with pytest.raises(RuntimeError, match="io_uring not enabled"):
            call()
    device.close()


def test_read_uring_is_deprecated_and_write_uring_is_synchronous(image):
    device = open_device(image, "io_uring")
    device.write_uring(4096, b"sync", 4, total_len=4096)
    out = bytearray(4)
    with pytest.warns(DeprecationWarning, match="use batched_read"):
        device.read_uring(4096, out, 4, total_len=4096)
    assert out == b"sync"
    with pytest.raises(ValueError, match="output buffer too small"):
        with pytest.warns(DeprecationWarning):
            device.read_uring(0, bytearray(2), 4)
    with pytest.raises(RuntimeError, match="Unexpected short I/O"):
        with pytest.warns(DeprecationWarning):
            device.read_uring(SIZE, bytearray(4096), 4096)
    device.close()


def test_register_fixed_buffers_validates_once(image):
    device = open_device(image, "io_uring")
    assert device.fixed_buffer_status() == (False, 0)
    for ptrs, sizes, message in [
        ([4096], [], "same length"),
        ([], [], "no fixed buffers"),
        ([0], [4096], "fixed buffer 0 has a null pointer"),
        ([4096], [0], "fixed buffer 0 has zero size"),
        ([4096], [(1 << 30) + 1], "fixed buffer 0 exceeds the 1 GiB limit"),
        ([4096, 6000], [4096, 4096], "fixed buffer regions overlap"),
        ([1] * 65537, [1] * 65537, "too many fixed buffers"),
    ]:
        with pytest.raises(ValueError, match=message):
            device.register_fixed_buffers(ptrs, sizes)
    device.register_fixed_buffers([4096, 1 << 20], [8192, 4096])
    assert device.fixed_buffer_status() == (True, 12288)
    with pytest.raises(RuntimeError, match="fixed buffers are already registered"):
        device.register_fixed_buffers([1 << 30], [4096])
    device.close()
    assert device.fixed_buffer_status() == (False, 0)


def test_nvme_and_fdp_calls_fail_without_uring_cmd(image):
    device = open_device(image, "io_uring")
    for call in (device.nvme_nsid, device.nvme_lba_shift, device.nvme_lba_size):
        with pytest.raises(RuntimeError, match=r"NVMe .* not available \(use_uring_cmd not enabled\)"):
            call()
    with pytest.raises(RuntimeError, match="fetch_fdp_status requires use_uring_cmd to be enabled"):
        device.fetch_fdp_status()
    assert device.worker_error() is None
    device.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_flush_and_close(image, engine):
    device = open_device(image, engine)
    device.pwrite_from_buffer(0, b"durable")
    device.flush()
    device.close()
    device.close()  # idempotent
    assert device.size_bytes() == SIZE and device.worker_error() is None
    for call in (lambda: device.pread_into(0, bytearray(1), 1),
                 lambda: device.pwrite_from_buffer(0, b"x"),
                 device.flush,
                 lambda: device.wait_iouring(1)):
        with pytest.raises(RuntimeError, match="device is closed"):
            call()


def test_close_completes_the_writes_queued_before_it(image):
    device = open_device(image, "io_uring", iouring_queue_depth=8)
    count = 128
    device.batched_write([i * 4096 for i in range(count)], [bytes([i + 1]) * 4096 for i in range(count)],
                         [4096] * count)
    device.close()
    raw = image.read_bytes()
    assert [raw[i * 4096] for i in range(count)] == [i + 1 for i in range(count)]
    with pytest.raises(RuntimeError, match="device is closed"):
        device.batched_write([0], [b"x"], [1])



def test_writes_past_the_end_are_refused_not_grown(image):
    device = open_device(image, "posix")
    with pytest.raises(OSError) as raised:
        device.pwrite_from_buffer(SIZE, b"x" * 4096)
    assert raised.value.errno == 28 and raised.value.strerror == "pwrite failed"
    assert image.stat().st_size == SIZE
    device.close()


def test_close_while_another_thread_waits_hands_it_the_results(image):
    import threading

    device = open_device(image, "io_uring", iouring_queue_depth=2)
    outs = [bytearray(4096) for _ in range(64)]
    batch = device.batched_read([i * 4096 for i in range(64)], outs, [4096] * 64)
    results = []
    waiter = threading.Thread(target=lambda: results.append(device.wait_iouring(batch)))
    waiter.start()
    device.close()
    waiter.join()
    # The waiter either got in before close (all 64 read) or was refused as closed; never hangs.
    assert results == [([True] * 64, [])] or results == []
