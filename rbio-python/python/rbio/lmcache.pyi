from ._rbio import RawBlockDevice as RawBlockDevice

__all__ = ["RawBlockDevice"]
