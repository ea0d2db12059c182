"""Ray, the optional scale-out extra: one place that imports it and connects to a cluster.

Ray serves ``sweep`` (Ray Tune) and ``predict --ray`` (Ray Data); nothing else needs it, so it is
imported only when one of them runs, and its absence is one clear message.
"""

from __future__ import annotations

import os
from typing import Any

from spermlib.allocator import MALLOC_KEEP
from spermlib.data.datasets import PROJECT_ROOT
from spermlib.errors import SpermlibError

# The allocator policy of ``allocator.tune_malloc``, as glibc reads it when a worker process starts (before any of
# its threads allocates, which a later ``mallopt`` call in an actor's constructor cannot undo).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(MALLOC_KEEP), "MALLOC_TRIM_THRESHOLD_": str(MALLOC_KEEP),
              "MALLOC_ARENA_MAX": "1"}
INSTALL_HINT = "pip install -e '.[scale]' (or pip install -r requirements-scale.txt)"


def require_ray() -> Any:
    """The ``ray`` module, or a ``SpermlibError`` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise SpermlibError(f"this command needs Ray, an optional extra: {INSTALL_HINT}") from None
    return ray


def runtime_env() -> dict:
    """Workers of a local cluster import this checkout's ``spermlib`` and see the same store redirections."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("SPERMLIB_", "SPERM_DATA_DIR"))}
    path = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {**env, **MALLOC_ENV, "PYTHONPATH": path}}


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Ray, initialised: an existing connection is reused; else ``address`` (a running cluster, e.g.
    ``ray://head:10001`` or ``auto``) or, by default, a local cluster on this machine."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env(),
                     logging_level="WARNING", log_to_driver=False)
        except ConnectionError as err:
            raise SpermlibError(f"cannot reach the Ray cluster at {address}: {err}") from None
    return ray
