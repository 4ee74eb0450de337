from .._rbio import RawBlockDevice as RawBlockDevice

class InstallError(RuntimeError):
    """The installed LMCache is not one install() knows; nothing was changed."""

def install(bringup: bool = False) -> None: ...
def uninstall() -> None: ...

__all__ = ["InstallError", "RawBlockDevice", "install", "uninstall"]
