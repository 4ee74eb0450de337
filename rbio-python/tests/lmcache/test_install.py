"""`rbio.lmcache.install()` points LMCache's native module at rbio's whether or not it was
imported before, leaves open cores on their device, replaces the load step only with
`bringup=True`, undoes all of it with `uninstall()`, and refuses an LMCache it does not know
while changing nothing.
"""

import importlib
import importlib.metadata
import os
import subprocess
import sys

import pytest

import lmcache_support as lm
import rbio.lmcache

NATIVE = "lmcache_rust_raw_block_io"
SLOT_BYTES = 64 * 1024


@pytest.fixture(autouse=True)
def _lmcache_own_module_after_each_test():
    yield
    rbio.lmcache.uninstall()


def load_step():
    return lm.RawBlockCore.__dict__["_load_checkpoint_from_device"]


def put_and_load(core, index):
    data = lm.payload(index, 5000)
    assert core.put_many([lm.key(index)], [lm.memory_obj(data)]).results == [True]
    out = lm.memory_obj(len(data))
    assert core.load_many_into([lm.key(index).encoded], [out]) == [True]
    assert bytes(out.byte_array) == data


def test_after_install_lmcache_imported_before_opens_rbio_devices_and_open_cores_keep_theirs(
    tmp_path,
):
    native = importlib.import_module(NATIVE)
    image = lm.sparse_image(tmp_path / "dev.img", 16 * lm.MIB)
    before = lm.open_core(lm.config(image, io_engine="posix", slot_bytes=SLOT_BYTES))
    native_class = type(before.raw_device())
    assert native_class is native.RawBlockDevice
    assert native_class is not rbio.lmcache.RawBlockDevice

    rbio.lmcache.install()
    assert importlib.import_module(NATIVE).RawBlockDevice is rbio.lmcache.RawBlockDevice
    from lmcache_rust_raw_block_io import RawBlockDevice

    assert RawBlockDevice is rbio.lmcache.RawBlockDevice
    other = lm.sparse_image(tmp_path / "other.img", 16 * lm.MIB)
    after = lm.open_core(lm.config(other, io_engine="io_uring", slot_bytes=SLOT_BYTES))
    assert type(after.raw_device()) is rbio.lmcache.RawBlockDevice
    assert type(before.raw_device()) is native_class
    put_and_load(before, 1)
    put_and_load(after, 2)
    after.close()
    before.close()

    rbio.lmcache.uninstall()
    assert importlib.import_module(NATIVE) is native
    assert load_step().__name__ == "_load_checkpoint_from_device"
    assert not getattr(load_step(), "__rbio__", False)


def test_install_before_anything_imported_never_loads_lmcaches_native_module(tmp_path):
    program = f"""
import sys
import rbio.lmcache
rbio.lmcache.install()
sys.path.insert(0, {os.path.dirname(lm.__file__)!r})
import lmcache_support as lm
image = lm.sparse_image({str(tmp_path / "dev.img")!r}, 16 << 20)
core = lm.open_core(lm.config(image, io_engine="io_uring", slot_bytes={SLOT_BYTES}))
assert type(core.raw_device()) is rbio.lmcache.RawBlockDevice, type(core.raw_device())
import lmcache_rust_raw_block_io
assert lmcache_rust_raw_block_io.RawBlockDevice is rbio.lmcache.RawBlockDevice
with open("/proc/self/maps") as maps:
    native = [line for line in maps if "lmcache_rust_raw_block_io" in line]
assert not native, native
core.close()
print("rbio device")
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("rbio device")


def test_a_module_dropped_from_sys_modules_or_its_submodule_imports_as_rbios():
    rbio.lmcache.install()
    for name in [NATIVE, f"{NATIVE}.{NATIVE}"]:
        sys.modules.pop(name, None)
        assert importlib.import_module(name).RawBlockDevice is rbio.lmcache.RawBlockDevice
    from lmcache_rust_raw_block_io.lmcache_rust_raw_block_io import RawBlockDevice

    assert RawBlockDevice is rbio.lmcache.RawBlockDevice


def test_bringup_true_replaces_the_load_step_and_install_again_gives_it_back():
    lmcache_step = load_step()
    rbio.lmcache.install(bringup=True)
    assert getattr(load_step(), "__rbio__", False)
    rbio.lmcache.install(bringup=True)
    assert getattr(load_step(), "__rbio__", False)
    rbio.lmcache.install()
    assert load_step() is lmcache_step
    rbio.lmcache.install(bringup=True)
    rbio.lmcache.uninstall()
    assert load_step() is lmcache_step
    rbio.lmcache.uninstall()
    assert load_step() is lmcache_step


def untouched():
    """What install() must leave as it was when it refuses."""
    return (sys.modules.get(NATIVE), list(sys.meta_path), load_step())


@pytest.mark.parametrize("version", ["0.5.5", "0.5.7", "0.6.0"])
@pytest.mark.parametrize("bringup", [False, True])
def test_another_lmcache_version_is_refused_and_left_unchanged(monkeypatch, version, bringup):
    real_version = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata,
        "version",
        lambda name: version if name == "lmcache" else real_version(name),
    )
    before = untouched()
    with pytest.raises(rbio.lmcache.InstallError) as refusal:
        rbio.lmcache.install(bringup=bringup)
    message = str(refusal.value)
    assert f"lmcache {version} is installed" in message
    assert "0.5.6" in message and "0.5.7rc2" in message
    assert untouched() == before


def test_a_missing_lmcache_is_refused(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    before = untouched()
    with pytest.raises(rbio.lmcache.InstallError, match="lmcache is not installed"):
        rbio.lmcache.install()
    assert untouched() == before


@pytest.mark.parametrize(
    "method", ["_is_stale_header", "_apply_loaded_state", "_allocate_slot_locked"]
)
def test_a_changed_load_step_refuses_bringup_and_changes_nothing(monkeypatch, method):
    def changed(self, *args, **kwargs):
        """A load step rbio does not know."""

    monkeypatch.setattr(lm.RawBlockCore, method, changed)
    before = untouched()
    with pytest.raises(rbio.lmcache.InstallError, match="load step differs"):
        rbio.lmcache.install(bringup=True)
    assert untouched() == before
    # The module alone does not depend on the load step.
    rbio.lmcache.install()
    assert sys.modules[NATIVE].RawBlockDevice is rbio.lmcache.RawBlockDevice


def test_a_missing_load_step_method_is_refused(monkeypatch):
    monkeypatch.delattr(lm.RawBlockCore, "_validate_loaded_entries")
    with pytest.raises(rbio.lmcache.InstallError, match="no method _validate_loaded_entries"):
        rbio.lmcache.install(bringup=True)


def test_the_installed_lmcache_is_a_supported_release():
    assert lm.lmcache_version() in ("0.5.6", "0.5.7rc2")


def test_index_entries_with_other_fields_are_refused(monkeypatch):
    import dataclasses

    @dataclasses.dataclass
    class Reordered:
        path: str
        shape: object
        size: int

    monkeypatch.setattr(lm.core_module, "DiskCacheMetadata", Reordered)
    before = untouched()
    with pytest.raises(rbio.lmcache.InstallError, match="DiskCacheMetadata has fields"):
        rbio.lmcache.install(bringup=True)
    assert untouched() == before
