"""A drop-in for LMCache's native module ``lmcache_rust_raw_block_io``.

``RawBlockDevice`` has the constructor, methods, results and exceptions of LMCache's class
(lmcache-rust-raw-block-io 0.5.7rc2), on rbio's engines: ``io_engine="posix"`` runs on
rbio's posix thread pool, ``"io_uring"`` on its io_uring engine, ``use_uring_cmd=True`` on
its NVMe passthrough engine.
"""

from .._rbio import RawBlockDevice
from ._install import InstallError, install, uninstall

__all__ = ["InstallError", "RawBlockDevice", "install", "uninstall"]
