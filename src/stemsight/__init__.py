"""stemsight: find and name every atomic site in an atomic-resolution STEM image of a 2D crystal.

Importing the package is cheap: torch, abTEM and matplotlib are imported only by the functions that
need them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stemsight")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
