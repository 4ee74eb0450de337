"""``rbio.lmcache.install()``: an unchanged LMCache runs its raw_block backend on rbio.

LMCache's ``RawBlockCore`` imports ``lmcache_rust_raw_block_io.RawBlockDevice`` when a core
first opens its device. After ``install()`` that import gives rbio's drop-in class, whether or
not LMCache or its own native module were imported before: the module's entry in
``sys.modules`` is replaced and a finder at the front of ``sys.meta_path`` answers any later
import of the name. Cores that already opened their device keep it.

``install(bringup=True)`` also replaces the core's whole load step (checkpoint select, parse,
apply, validate) by one ``rbio.bringup`` call (see ``_load``). Both are refused, with LMCache
left as it was, unless the installed LMCache is a release rbio knows (see ``_compat``).
``uninstall()`` puts everything back.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import types
from typing import Any

from rbio.lmcache import _compat, _load
from rbio.lmcache._compat import InstallError

__all__ = ["InstallError", "install", "uninstall"]

#: LMCache's native module, and the submodule its package re-exports from.
NATIVE_MODULE = "lmcache_rust_raw_block_io"
_NATIVE_NAMES = (NATIVE_MODULE, f"{NATIVE_MODULE}.{NATIVE_MODULE}")

#: The ``RawBlockCore`` method that is LMCache's whole load step.
_LOAD_STEP = "_load_checkpoint_from_device"

_NOT_IMPORTED = object()


class _Redirect(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of LMCache's native module names with rbio's module."""

    def __init__(self, module: types.ModuleType):
        self.module = module

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        """A spec loading rbio's module for the native names; ``None`` for any other."""
        if fullname not in _NATIVE_NAMES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> types.ModuleType:
        """rbio's module, the same object under every native name."""
        return self.module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the module is complete."""


class _Installation:
    """What ``install()`` changed, so that ``uninstall()`` can put it back."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.redirect: _Redirect | None = None
        self.displaced: dict[str, Any] = {}
        self.core_class: type | None = None
        self.lmcache_load_step: Any = None

    def replaced_methods(self) -> dict[str, Any]:
        """LMCache's own methods that rbio has replaced, by name."""
        return {} if self.lmcache_load_step is None else {_LOAD_STEP: self.lmcache_load_step}


_installation = _Installation()


def install(bringup: bool = False) -> None:
    """Makes an unchanged LMCache run its raw_block backend on rbio.

    From now on ``import lmcache_rust_raw_block_io`` gives rbio's module, whose
    ``RawBlockDevice`` is ``rbio.lmcache.RawBlockDevice``; cores that already opened their
    device keep it. With ``bringup=True``, each ``RawBlockCore`` built from now on loads its
    checkpoint with one ``rbio.bringup`` call over its configured engine (off the GIL): the
    same index, free slots and ``next_slot`` as LMCache's own load step, except where
    LMCache's result would be unsafe (see ``rbio.lmcache._load``), which LMCache's log then
    says. ``install(bringup=False)`` after ``install(bringup=True)`` gives LMCache its own
    load step back. Calling it again is harmless.

    Raises:
        InstallError: LMCache is missing, is not 0.5.6 or 0.5.7rc2, or (with ``bringup``)
            its load step is not the one rbio knows. Nothing was changed.
    """
    with _installation.lock:
        version = _compat.lmcache_version()
        module = None
        if bringup:
            module = _compat.core_module(version)
            _compat.check_load_step(module, version, _installation.replaced_methods())
        _redirect_native_module()
        if module is not None:
            _replace_load_step(module)
        else:
            _restore_load_step()


def uninstall() -> None:
    """Undoes ``install()``: LMCache's own native module and load step come back.

    Cores that opened their device meanwhile keep rbio's device until they close.
    """
    with _installation.lock:
        _restore_load_step()
        redirect = _installation.redirect
        if redirect is None:
            return
        if redirect in sys.meta_path:
            sys.meta_path.remove(redirect)
        for name in _NATIVE_NAMES:
            displaced = _installation.displaced.pop(name, _NOT_IMPORTED)
            if sys.modules.get(name) is redirect.module:
                del sys.modules[name]
            if displaced is not _NOT_IMPORTED:
                sys.modules[name] = displaced
        _installation.redirect = None


def _rbio_native_module() -> types.ModuleType:
    """A module shaped like LMCache's native one, holding rbio's ``RawBlockDevice``."""
    from rbio.lmcache import RawBlockDevice

    module = types.ModuleType(
        NATIVE_MODULE,
        "rbio's drop-in for LMCache's native raw_block module (rbio.lmcache.install()).",
    )
    module.RawBlockDevice = RawBlockDevice
    module.__all__ = ["RawBlockDevice"]
    # A package with no directory, so that the name of the native submodule also resolves
    # (through the finder) to this module.
    module.__path__ = []
    return module


def _redirect_native_module() -> None:
    """Points the native module's names at rbio's module, now and for later imports."""
    redirect = _installation.redirect
    if redirect is None:
        redirect = _Redirect(_rbio_native_module())
        for name in _NATIVE_NAMES:
            _installation.displaced[name] = sys.modules.get(name, _NOT_IMPORTED)
        _installation.redirect = redirect
    if redirect not in sys.meta_path:
        sys.meta_path.insert(0, redirect)
    for name in _NATIVE_NAMES:
        sys.modules[name] = redirect.module


def _replace_load_step(module: types.ModuleType) -> None:
    """Puts rbio's load step in ``module.RawBlockCore``, keeping LMCache's to restore."""
    core_class = module.RawBlockCore
    if _installation.core_class is core_class:
        return
    _restore_load_step()
    lmcache_load_step = core_class.__dict__[_LOAD_STEP]
    setattr(core_class, _LOAD_STEP, _load.make_load_step(module, lmcache_load_step))
    _installation.core_class = core_class
    _installation.lmcache_load_step = lmcache_load_step


def _restore_load_step() -> None:
    """Gives ``RawBlockCore`` back its own load step, if rbio replaced it."""
    if _installation.core_class is None:
        return
    setattr(_installation.core_class, _LOAD_STEP, _installation.lmcache_load_step)
    _installation.core_class = None
    _installation.lmcache_load_step = None
