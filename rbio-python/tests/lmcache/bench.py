"""LMCache on rbio, measured (a benchmark, not a test; `scripts/lmcache-bench` runs it).

In one run, on one image, with a cold page cache before every bringup (O_DIRECT, io_uring):
LMCache's bringup (``RawBlockCore`` construction) with its own native module, after
``rbio.lmcache.install()`` and after ``install(bringup=True)``; then ``put_many`` and
``load_many_into`` throughput on LMCache's module and on rbio's. Every measurement runs in a
fresh process (a real restart: imports done before the clock starts), the variants alternate
within each round in a rotating order, and the table gives medians with each row's ratio to
LMCache's own module measured in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BRINGUP_VARIANTS = ("lmcache", "rbio", "rbio-bringup")
IO_MODULES = ("lmcache", "rbio")
LABELS = {
    "lmcache": "LMCache alone (its native module)",
    "rbio": "after rbio.lmcache.install()",
    "rbio-bringup": "after install(bringup=True)",
}
MIB = 1 << 20
#: Width of the table's first column.
WIDTH = 48


def measure_bringup(args: argparse.Namespace) -> dict:
    """One bringup of the benchmark image through ``args.variant`` (in this process)."""
    import lmcache_support as lm

    config = lm.config(
        args.image,
        io_engine="io_uring",
        slot_bytes=args.slot_bytes,
        meta_total_bytes=args.meta_total_bytes,
    )
    with lm.using(args.variant):
        started = time.perf_counter()
        core = lm.open_core(config)
        seconds = time.perf_counter() - started
        state = lm.state(core)
        report = getattr(core, "_rbio_report", None)
        device = lm.device_module(core)
        # A clean image stays clean: close writes no checkpoint.
        assert not state["dirty"], "the benchmark image changed"
        core.close()
    return {
        "seconds": seconds,
        "device": device,
        "index_len": len(state["index"]),
        "free_slots": len(state["free_slots"]),
        "next_slot": state["next_slot"],
        "rbio_seconds": None if report is None else report.phases["total"],
    }


def measure_io(args: argparse.Namespace) -> dict:
    """``put_many`` then ``load_many_into`` of ``args.io_entries`` payloads through
    ``args.variant``'s module on a fresh scratch image; bytes per second for each."""
    import lmcache_support as lm

    payload_bytes = args.io_slot_bytes - lm.HEADER_BYTES
    image = lm.sparse_image(
        args.scratch, lm.META_TOTAL_BYTES + (args.io_entries + 1) * args.io_slot_bytes
    )
    config = lm.config(image, io_engine="io_uring", slot_bytes=args.io_slot_bytes)
    keys = [lm.key(i) for i in range(args.io_entries)]
    sources = [lm.memory_obj(lm.payload(i, payload_bytes)) for i in range(args.io_entries)]
    targets = [lm.memory_obj(payload_bytes) for _ in range(args.io_entries)]
    batch = args.io_batch
    with lm.using(args.variant):
        core = lm.open_core(config)
        device = lm.device_module(core)
        started = time.perf_counter()
        for at in range(0, len(keys), batch):
            assert all(core.put_many(keys[at : at + batch], sources[at : at + batch]).results)
        put_seconds = time.perf_counter() - started
        lm.drop_caches()
        started = time.perf_counter()
        for at in range(0, len(keys), batch):
            encoded = [k.encoded for k in keys[at : at + batch]]
            assert all(core.load_many_into(encoded, targets[at : at + batch]))
        load_seconds = time.perf_counter() - started
        core._meta_dirty_total = core._meta_persisted  # no final checkpoint: not measured
        core.close()
    assert all(
        bytes(t.byte_array) == bytes(s.byte_array) for t, s in zip(targets, sources)
    ), "load_many_into read back other bytes than put_many wrote"
    os.unlink(image)
    total = payload_bytes * args.io_entries
    return {
        "device": device,
        "put_bytes_per_s": total / put_seconds,
        "load_bytes_per_s": total / load_seconds,
    }


def fio_header_read(args: argparse.Namespace, entries: int) -> float | None:
    """Seconds fio takes to read the same slot headers in slot order (io_uring, O_DIRECT,
    depth 256 as LMCache's and rbio's windows): the device's floor. ``None`` without fio."""
    import lmcache_support as lm

    if shutil.which("fio") is None:
        return None
    lm.drop_caches()
    done = subprocess.run(
        [
            "fio", "--name=headers", f"--filename={args.image}", "--readonly",
            "--rw=read", f"--bs={lm.HEADER_BYTES}", "--zonemode=strided",
            f"--zonesize={lm.HEADER_BYTES}", f"--zonerange={args.slot_bytes}",
            f"--offset={args.meta_total_bytes}", f"--size={entries * args.slot_bytes}",
            f"--io_size={entries * lm.HEADER_BYTES}", "--ioengine=io_uring",
            "--iodepth=256", "--direct=1", "--output-format=json",
        ],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    job = json.loads(done.stdout)["jobs"][0]
    return job["read"]["runtime"] / 1000


def child(args: argparse.Namespace, kind: str, variant: str) -> dict:
    """Runs one measurement in a fresh interpreter and returns what it printed."""
    command = [sys.executable, __file__, f"--measure={kind}", f"--variant={variant}"]
    command += [f"--{name.replace('_', '-')}={value}" for name, value in shared(args).items()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"{kind} {variant} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def shared(args: argparse.Namespace) -> dict:
    """The options a measurement needs from the driver."""
    names = ["image", "scratch", "slot_bytes", "meta_total_bytes"]
    names += ["io_entries", "io_slot_bytes", "io_batch"]
    return {name: getattr(args, name) for name in names}


def rotated(variants: tuple, round_index: int) -> list:
    """The variants in this round's order: each goes first in turn."""
    shift = round_index % len(variants)
    return list(variants[shift:] + variants[:shift])


def run(args: argparse.Namespace) -> dict:
    """All rounds; every measurement's numbers by variant."""
    import lmcache_support as lm

    bringups = {v: [] for v in BRINGUP_VARIANTS}
    ios = {v: [] for v in IO_MODULES}
    fio = []
    for round_index in range(args.rounds):
        for variant in rotated(BRINGUP_VARIANTS, round_index):
            lm.drop_caches()
            bringups[variant].append(child(args, "bringup", variant))
        fio.append(fio_header_read(args, bringups["lmcache"][-1]["index_len"]))
        for variant in rotated(IO_MODULES, round_index):
            ios[variant].append(child(args, "io", variant))
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)
    for variant, runs in [*bringups.items(), *ios.items()]:
        expected = "lmcache" if variant == "lmcache" else "rbio"
        assert all(run["device"] == expected for run in runs), (variant, runs)
    recovered = {
        (r["index_len"], r["free_slots"], r["next_slot"]) for v in bringups.values() for r in v
    }
    assert len(recovered) == 1, f"the variants recovered different states: {recovered}"
    return {"bringups": bringups, "ios": ios, "fio": fio, "recovered": recovered.pop()}


def table(args: argparse.Namespace, results: dict) -> str:
    """The results as the table the README shows."""
    import lmcache_support as lm

    index_len, free_slots, next_slot = results["recovered"]
    lines = [
        f"LMCache {lm.lmcache_version()} on rbio: {args.rounds} rounds, variants alternating, "
        "medians (min-max); ratio = LMCache alone / row for times, row / LMCache alone for "
        "throughput (above 1 = rbio faster)",
        f"image: {args.image} ({index_len:,} entries, slot {args.slot_bytes // MIB} MiB, "
        f"next_slot {next_slot:,}, {free_slots} free); io_uring, O_DIRECT, page cache dropped "
        "before every bringup",
        f"machine: Linux {platform.release()}, {cpu()}, {os.cpu_count()} CPUs; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"command: {args.command or ' '.join(sys.argv)}",
        "",
        f"{'row':<{WIDTH}}{'median':>12}{'range':>22}{'ratio':>8}",
    ]
    bringups = results["bringups"]
    base = statistics.median(r["seconds"] for r in bringups["lmcache"])
    for variant in BRINGUP_VARIANTS:
        seconds = [r["seconds"] for r in bringups[variant]]
        median = statistics.median(seconds)
        label = f"bringup, {LABELS[variant]}"
        lines.append(
            f"{label:<{WIDTH}}{median:>10.3f} s{min(seconds):>10.3f}-{max(seconds):.3f} s"
            f"{base / median:>8.2f}x"
        )
    rbio_inner = [r["rbio_seconds"] for r in bringups["rbio-bringup"]]
    lines.append(
        f"{'  of which rbio.bringup itself':<{WIDTH}}{statistics.median(rbio_inner):>10.3f} s"
        f"{min(rbio_inner):>10.3f}-{max(rbio_inner):.3f} s"
    )
    if None not in results["fio"]:
        fio = results["fio"]
        label = "  fio reading the same headers (the device)"
        lines.append(
            f"{label:<{WIDTH}}{statistics.median(fio):>10.3f} s"
            f"{min(fio):>10.3f}-{max(fio):.3f} s"
        )
    else:
        lines.append("  (fio is not installed: no row for the device's own speed)")
    payload_mib = (args.io_slot_bytes - lm.HEADER_BYTES) / MIB
    lines.append(
        f"put_many / load_many_into: {args.io_entries} entries of {payload_mib:.2f} MiB in "
        f"batches of {args.io_batch}, a fresh image per measurement, page cache dropped "
        "before the loads"
    )
    for kind, name in (("put_bytes_per_s", "put_many"), ("load_bytes_per_s", "load_many_into")):
        base = statistics.median(r[kind] for r in results["ios"]["lmcache"])
        for variant in IO_MODULES:
            rates = [r[kind] / MIB for r in results["ios"][variant]]
            median = statistics.median(rates)
            module = "LMCache's module" if variant == "lmcache" else "rbio's module"
            lines.append(
                f"{name + ', ' + module:<{WIDTH}}{median:>8.0f} MiB/s"
                f"{min(rates):>8.0f}-{max(rates):.0f} MiB/s{median * MIB / base:>8.2f}x"
            )
    return "\n".join(lines)


def cpu() -> str:
    """The CPU's model name."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="the prepared benchmark image")
    parser.add_argument("--scratch", required=True, help="a path for the put/load image")
    parser.add_argument("--slot-bytes", type=int, default=MIB)
    parser.add_argument("--meta-total-bytes", type=int, default=256 * MIB)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--io-entries", type=int, default=256)
    parser.add_argument("--io-slot-bytes", type=int, default=MIB)
    parser.add_argument("--io-batch", type=int, default=64)
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--command", help="the command that ran this benchmark, for the table")
    parser.add_argument("--measure", choices=["bringup", "io"], help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.measure == "bringup":
        print(json.dumps(measure_bringup(args)))
        return
    if args.measure == "io":
        print(json.dumps(measure_io(args)))
        return
    results = run(args)
    text = table(args, results)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
