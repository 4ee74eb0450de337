from . import lmcache as lmcache
from ._rbio import (
    Inspection as Inspection,
    RbioError as RbioError,
    Report as Report,
    __version__ as __version__,
    bringup as bringup,
    inspect as inspect,
)
