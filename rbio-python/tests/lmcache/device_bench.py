"""The two ``RawBlockDevice`` modules side by side, without LMCache's core around them (a
benchmark, not a test): the ``batched_write`` + ``wait_iouring`` and ``batched_read`` +
``wait_iouring`` calls LMCache 0.5.6's ``put_many`` and ``load_many_into`` make, with the
same sizes and buffer kinds (per key a 4 KiB ``bytes`` header and a ``bytearray`` payload of
one slot less the header; batches of 64 keys), on one preallocated image, O_DIRECT, io_uring.

Rounds alternate the modules (each goes first in turn); the table gives the median MiB/s of
each module and rbio's ratio to LMCache's module measured in the same rounds.

    python device_bench.py --image /var/tmp/dev.img [--rounds 9] [--entries 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

MIB = 1 << 20
HEADER_BYTES = 4096


def module(name: str):
    """The ``RawBlockDevice`` class of ``name`` (``lmcache`` or ``rbio``)."""
    if name == "lmcache":
        import lmcache_rust_raw_block_io

        return lmcache_rust_raw_block_io.RawBlockDevice
    import rbio.lmcache

    return rbio.lmcache.RawBlockDevice


def check(device, batch_id: int, count: int) -> None:
    """Waits for a batch and fails unless every operation succeeded."""
    ok, errors = device.wait_iouring(batch_id)
    assert len(ok) == count and all(ok), errors


def put(device, args, sources: list) -> float:
    """Seconds to write every entry as LMCache's put_many does: one batch of header and
    payload writes per ``args.batch`` keys, each waited for before the next."""
    payload_bytes = args.slot_bytes - HEADER_BYTES
    started = time.perf_counter()
    for at in range(0, args.entries, args.batch):
        offsets, buffers, lens = [], [], []
        for i in range(at, min(at + args.batch, args.entries)):
            slot = i * args.slot_bytes
            header = bytes([i & 0xFF]) * HEADER_BYTES
            offsets += [slot, slot + HEADER_BYTES]
            buffers += [header, sources[i]]
            lens += [HEADER_BYTES, payload_bytes]
        batch_id = device.batched_write(offsets, buffers, lens, [None] * len(lens), lens)
        check(device, batch_id, len(offsets))
    return time.perf_counter() - started


def load(device, args, targets: list) -> float:
    """Seconds to read every payload back as LMCache's load_many_into does."""
    payload_bytes = args.slot_bytes - HEADER_BYTES
    started = time.perf_counter()
    for at in range(0, args.entries, args.batch):
        keys = range(at, min(at + args.batch, args.entries))
        offsets = [i * args.slot_bytes + HEADER_BYTES for i in keys]
        batch_id = device.batched_read(
            offsets, [targets[i] for i in keys], [payload_bytes] * len(offsets)
        )
        check(device, batch_id, len(offsets))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--entries", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--slot-bytes", type=int, default=MIB)
    parser.add_argument("--modules", default="lmcache,rbio")
    args = parser.parse_args()
    names = args.modules.split(",")
    payload_bytes = args.slot_bytes - HEADER_BYTES
    size_bytes = args.entries * args.slot_bytes
    with open(args.image, "ab") as image:
        os.posix_fallocate(image.fileno(), 0, size_bytes)
    sources = [
        memoryview(bytearray(bytes([i & 0xFF, 0x5A]) * (payload_bytes // 2)))
        for i in range(args.entries)
    ]
    targets = [memoryview(bytearray(payload_bytes)) for _ in range(args.entries)]
    devices = {
        name: module(name)(
            args.image, True, use_odirect=True, alignment=4096, io_engine="io_uring"
        )
        for name in names
    }
    total_mib = payload_bytes * args.entries / MIB
    rates: dict[str, dict[str, list[float]]] = {n: {"put": [], "load": []} for n in names}
    for round_index in range(args.rounds + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            put_s = put(devices[name], args, sources)
            for target in targets:
                target[:16] = bytes(16)
            load_s = load(devices[name], args, targets)
            assert all(t == s for t, s in zip(targets, sources)), name
            if round_index > 0:  # the first round warms up
                rates[name]["put"].append(total_mib / put_s)
                rates[name]["load"].append(total_mib / load_s)
    for device in devices.values():
        device.close()
    print(f"{args.entries} entries of {payload_bytes} bytes, batches of {args.batch}, "
          f"{args.rounds} rounds, medians")
    for kind in ("put", "load"):
        base = statistics.median(rates[names[0]][kind])
        for name in names:
            median = statistics.median(rates[name][kind])
            low, high = min(rates[name][kind]), max(rates[name][kind])
            print(f"{kind:<5} {name:<8} {median:8.0f} MiB/s  ({low:.0f}-{high:.0f})"
                  f"  {median / base:5.2f}x")


if __name__ == "__main__":
    main()
