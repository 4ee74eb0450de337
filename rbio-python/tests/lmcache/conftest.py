"""LMCache in the loop: real LMCache (0.5.6 or 0.5.7rc2) runs its raw_block core on rbio.

These tests need LMCache, torch and rbio in one environment; `scripts/lmcache-tests` builds
it and runs them with RBIO_LMCACHE_TESTS=1, and there a missing LMCache is an error. Any
other pytest run leaves them uncollected and says so in its summary.
"""

import importlib.metadata
import os

_REQUIRED = os.environ.get("RBIO_LMCACHE_TESTS") == "1"


def _lmcache_installed() -> bool:
    """Whether the lmcache distribution is installed (an import probe would find this very
    directory, tests/lmcache, as a namespace package)."""
    try:
        importlib.metadata.version("lmcache")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


_HAVE_LMCACHE = _lmcache_installed()

if not _HAVE_LMCACHE:
    if _REQUIRED:
        raise RuntimeError(
            "RBIO_LMCACHE_TESTS=1 but lmcache is not installed: run scripts/lmcache-tests"
        )
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter):
    """Says when this run left the LMCache-in-the-loop suite out."""
    if not _HAVE_LMCACHE:
        terminalreporter.write_line(
            "rbio-python/tests/lmcache: not collected (lmcache is not installed here); "
            "scripts/lmcache-tests runs it"
        )
