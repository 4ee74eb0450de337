"""rbio: fast, safe bringup of LMCache raw_block cache devices over rbio's I/O engines.

``rbio.bringup(path, **options)`` brings a device up as ``rbio bringup`` does and returns a
:class:`Report`; ``rbio.bringup_many(paths, **options)`` brings several up at once;
``rbio.inspect(path, **options)`` reads its checkpoint mirrors as
``rbio inspect`` does. ``rbio.lmcache.RawBlockDevice`` is a drop-in for LMCache's native
``lmcache_rust_raw_block_io.RawBlockDevice``.
"""

from ._rbio import Inspection, RbioError, Report, __version__, bringup, bringup_many, inspect
from . import lmcache

__all__ = ["Inspection", "RbioError", "Report", "__version__", "bringup", "bringup_many", "inspect", "lmcache"]
