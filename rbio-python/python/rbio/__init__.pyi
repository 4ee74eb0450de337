from . import lmcache as lmcache
from ._rbio import (
    Inspection as Inspection,
    RbioError as RbioError,
    Report as Report,
    __version__ as __version__,
    bringup as bringup,
    bringup_many as bringup_many,
    inspect as inspect,
)
