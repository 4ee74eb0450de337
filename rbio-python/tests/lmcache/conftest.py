"""LMCache in the loop: real LMCache (0.5.6 or 0.5.7rc2) runs its raw_block core on rbio.

These tests need LMCache, torch and rbio in one environment; `scripts/lmcache-tests` builds
it and runs them with RBIO_LMCACHE_TESTS=1, and there a missing LMCache is an error. Any
other pytest run leaves them uncollected and says so in its header.
"""

import importlib.util
import os

_REQUIRED = os.environ.get("RBIO_LMCACHE_TESTS") == "1"
_HAVE_LMCACHE = importlib.util.find_spec("lmcache") is not None

if not _HAVE_LMCACHE:
    if _REQUIRED:
        raise RuntimeError(
            "RBIO_LMCACHE_TESTS=1 but lmcache is not importable: run scripts/lmcache-tests"
        )
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header(config):
    """Says whether this run includes the LMCache-in-the-loop suite."""
    if _HAVE_LMCACHE:
        return None
    return (
        "rbio-python/tests/lmcache: not collected here (no lmcache); "
        "scripts/lmcache-tests runs it"
    )
