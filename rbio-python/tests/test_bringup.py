"""rbio.bringup() and rbio.inspect() against the repository's LMCache fixtures: the same
index as the manifests say, the same JSON as `rbio bringup --json`, the command's errors."""

import json
import subprocess

import pytest

import rbio
from rbio_support import cli_flags

# What a run measures rather than recovers: times, memory, and how many header buffers were
# in use at once (the stream tops its window up before it looks at what it reaped, so that
# depends on how the device's completions arrive).
MEASURED_PER_RUN = ("phases", "peak_rss_bytes", "header_buffer_bytes_max")


def without_run_measurements(report: dict) -> dict:
    return {key: value for key, value in report.items() if key not in MEASURED_PER_RUN}


@pytest.mark.parametrize("engine", ["serial", "posix", "uring"])
def test_bringup_keeps_exactly_the_entries_the_manifest_expects(fixture_image, engine):
    image, manifest, layout = fixture_image
    report = rbio.bringup(str(image), ignore_device_path=True, engine=engine, **layout)
    expected = {k["encoded"]: k for k in manifest["keys"] if k["expected"] == "present"}
    index = {entry[0]: entry for entry in report.index}
    assert len(report.index) == manifest["expected_entries_after_recovery"]
    assert index.keys() == expected.keys()
    for key, entry in index.items():
        assert entry[1] == expected[key]["offset"], key
        assert entry[2] == expected[key]["payload_len"], key
    assert report.counts["in_index"] == len(report.index)
    assert report.checkpoint["seq"] == 2
    assert report.next_slot == manifest["layout"]["next_slot"]
    owned = {(entry[1] - manifest["layout"]["data_base_offset"]) // layout["slot_bytes"] for entry in report.index}
    assert set(report.free_slots) == set(range(report.next_slot)) - owned
    assert set(report.phases) == {"select", "parse", "apply", "validate", "total"}


def test_index_carries_the_tensor_metadata_as_python_objects(tmp_path):
    from rbio_support import unpack, FIXTURE_LAYOUT
    image, manifest = unpack("c2000kv", tmp_path)
    report = rbio.bringup(str(image), ignore_device_path=True, slot_bytes=8192, **FIXTURE_LAYOUT)
    key, offset, size, shape, dtype, fmt, cached_positions = report.index[0]
    assert isinstance(shape, list) and len(shape) == 4 and shape[0] == 2
    assert dtype == "bfloat16" and fmt == "KV_2LTD"
    with_positions = [entry for entry in report.index if entry[6] is not None]
    assert with_positions and all(isinstance(entry[6], list) for entry in with_positions)


@pytest.mark.parametrize(
    "options",
    [
        dict(ignore_device_path=True),
        dict(ignore_device_path=True, entries=True, engine="serial"),
        dict(ignore_device_path=True, verify=False, engine="posix"),
        dict(ignore_device_path=True, drop_unreadable=True, engine="uring", window=8),
        dict(engine="serial"),  # strict device path: the checkpoint is ignored as a whole
    ],
)
def test_to_json_equals_the_commands_json(fixture_image, rbio_cli, options):
    image, _, layout = fixture_image
    options = dict(options, **layout)
    report = rbio.bringup(str(image), **options)
    run = subprocess.run(
        [rbio_cli, "bringup", str(image), "--json", *cli_flags(options)],
        capture_output=True, text=True,
    )
    assert run.returncode in (0, 3, 4), run.stderr
    assert without_run_measurements(json.loads(report.to_json())) == without_run_measurements(json.loads(run.stdout))
    assert without_run_measurements(report.to_dict()) == without_run_measurements(json.loads(run.stdout))


def test_a_strict_device_path_ignores_the_checkpoint_as_lmcache_does(fixture_image):
    image, _, layout = fixture_image
    report = rbio.bringup(str(image), **layout)
    assert report.ignored is not None and "device_path" in report.ignored
    assert report.index == []


def test_errors_carry_the_commands_one_line_message(tmp_path, rbio_cli):
    missing = tmp_path / "missing.img"
    with pytest.raises(rbio.RbioError) as raised:
        rbio.bringup(str(missing), engine="serial")
    run = subprocess.run([rbio_cli, "bringup", str(missing), "--engine", "serial"], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == f"rbio: error: {raised.value}"
    small = tmp_path / "small.img"
    small.write_bytes(b"\0" * 4096)
    # No layout flag: the layout is read from the device, which records none.
    with pytest.raises(rbio.RbioError, match="give the layout flags"):
        rbio.bringup(str(small), engine="serial")
    with pytest.raises(rbio.RbioError, match="layout does not fit the device"):
        rbio.bringup(str(small), engine="serial", slot_bytes=65536)


def test_the_layout_is_read_from_the_device_when_no_flag_gives_it(fixture_image):
    image, manifest, _layout = fixture_image
    report = rbio.bringup(str(image), ignore_device_path=True, engine="serial")
    assert report.to_dict()["settings"]["layout_source"] == "device"
    assert len(report.index) == manifest["expected_entries_after_recovery"]


def test_new_keywords_match_the_new_flags(fixture_image):
    image, _manifest, _layout = fixture_image
    report = rbio.bringup(
        str(image),
        ignore_device_path=True,
        buffered=True,
        op_timeout=0.5,
        engine="posix",
    )
    settings = report.to_dict()["settings"]
    assert settings["direct"] is False
    assert settings["op_timeout_secs"] == 0.5
    with pytest.raises(ValueError, match="op_timeout"):
        rbio.bringup(str(image), op_timeout=0)
    with pytest.raises(ValueError, match="cannot be used together"):
        rbio.bringup(str(image), strict_device_path=True, ignore_device_path=True)


def test_keywords_are_checked():
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_verify'"):
        rbio.bringup("/nonexistent", no_verify=True)
    with pytest.raises(ValueError, match="unknown engine"):
        rbio.bringup("/nonexistent", engine="io_uring")
    with pytest.raises(ValueError, match="window must be 1 to"):
        rbio.bringup("/nonexistent", window=0)
    with pytest.raises(ValueError, match="meta_magic"):
        rbio.bringup("/nonexistent", meta_magic="short")
    with pytest.raises(TypeError, match="unexpected keyword argument 'verify'"):
        rbio.inspect("/nonexistent", verify=False)


def test_inspect_equals_the_commands_json(fixture_image, rbio_cli):
    image, manifest, layout = fixture_image
    options = dict(ignore_device_path=True, entries=True, engine="serial", **layout)
    inspection = rbio.inspect(str(image), **options)
    run = subprocess.run(
        [rbio_cli, "inspect", str(image), "--json", *cli_flags(options)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(inspection.to_json()) == json.loads(run.stdout)
    assert inspection.to_dict()["mirrors"][1]["seq"] == 2


def test_bringup_many_gives_each_device_its_report_or_its_error_in_order(tmp_path, rbio_cli):
    from rbio_support import unpack, FIXTURE_LAYOUT
    image, manifest = unpack("c1000", tmp_path)
    layout = dict(FIXTURE_LAYOUT, slot_bytes=manifest["config"]["slot_bytes"])
    missing = tmp_path / "missing.img"
    results = rbio.bringup_many([str(image), str(missing), image], ignore_device_path=True, **layout)
    assert len(results) == 3
    for report in (results[0], results[2]):
        assert isinstance(report, rbio.Report)
        assert len(report.index) == manifest["expected_entries_after_recovery"]
    assert isinstance(results[1], rbio.RbioError)
    run = subprocess.run([rbio_cli, "bringup", str(missing)], capture_output=True, text=True)
    assert run.stderr.strip() == f"rbio: error: {results[1]}"
    alone = rbio.bringup(str(image), ignore_device_path=True, **layout)
    assert without_run_measurements(json.loads(results[0].to_json())) == without_run_measurements(json.loads(alone.to_json()))
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_verify'"):
        rbio.bringup_many([str(image)], no_verify=True)
