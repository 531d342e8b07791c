"""storyreel's version, as installed (``0.0.0`` when running from a source tree that was never installed).

It is written into every manifest and is part of no cache key: what decides a shot's frames is
versioned by its generator (``Generator.version``), so upgrading storyreel reuses every cached shot.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("storyreel")
except PackageNotFoundError:
    __version__ = "0.0.0"
