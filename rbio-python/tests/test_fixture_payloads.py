"""Payloads LMCache 0.5.6 wrote read back through rbio.lmcache.RawBlockDevice, O_DIRECT, on
both engines, byte for byte against the manifest's payload rule."""

import mmap

import pytest

from rbio_support import unpack
from rbio.lmcache import RawBlockDevice

HEADER_BYTES = 4096


def expected_payload(i: int, length: int) -> bytes:
    """The manifest's payload_rule: bytes[0:8] = i (u64 LE); bytes[j] = (i*131 + j*7 + 1) & 0xff."""
    head = i.to_bytes(8, "little")
    return head[:length] + bytes((i * 131 + j * 7 + 1) & 0xFF for j in range(8, length))


def intact_keys(manifest):
    return [k for k in manifest["keys"] if k["expected"] == "present" and k["corruption"] is None]


def total_of(length: int) -> int:
    return -(-length // 4096) * 4096


@pytest.mark.parametrize("name", ["c1000", "c2000kv"])
def test_batched_reads_return_lmcaches_payloads(tmp_path, name):
    image, manifest = unpack(name, tmp_path)
    keys = intact_keys(manifest)
    device = RawBlockDevice(str(image), False, use_odirect=True, io_engine="io_uring", iouring_queue_depth=32)
    outs = [bytearray(k["payload_len"]) for k in keys]
    batch = device.batched_read(
        [k["offset"] + HEADER_BYTES for k in keys], outs, [total_of(k["payload_len"]) for k in keys]
    )
    ok, errors = device.wait_iouring(batch)
    assert errors == [] and all(ok)
    for key, out in zip(keys, outs):
        assert bytes(out) == expected_payload(key["i"], key["payload_len"]), key["encoded"]
    device.close()


def test_pread_into_returns_lmcaches_payloads_on_the_posix_engine(tmp_path):
    image, manifest = unpack("c2000kv", tmp_path)
    device = RawBlockDevice(str(image), False, use_odirect=True, io_engine="posix")
    for key in intact_keys(manifest)[:200]:
        out = memoryview(mmap.mmap(-1, total_of(key["payload_len"])))
        device.pread_into(key["offset"] + HEADER_BYTES, out, key["payload_len"], total_of(key["payload_len"]))
        assert bytes(out[: key["payload_len"]]) == expected_payload(key["i"], key["payload_len"])
    device.close()
