"""Ray itself: importing it on first use, and joining or starting the
cluster the shards run on."""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Optional

__all__ = ["INSTALL_HINT", "connect", "ray_module"]

INSTALL_HINT = 'pip install "hamsearch[distributed]"'


def ray_module() -> Any:
    """The ``ray`` module, imported on first use."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"hamsearch.distributed needs Ray, which could not be imported ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from exc
    return ray


def connect(ray: Any, address: Optional[str], cpus_needed: float) -> None:
    """Joins the cluster at ``address``, or the one this process or machine
    already runs, or starts a local one with enough CPUs for the shards."""
    if ray.is_initialized():
        return
    if address is not None:
        if not isinstance(address, str):
            raise TypeError(f"address: expected None or a str such as 'ray://host:10001' or 'auto', "
                            f"got {type(address).__name__}")
        ray.init(address=address, logging_level=logging.WARNING)
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)
        return
    try:
        ray.init(address="auto", logging_level=logging.WARNING)  # a cluster started by `ray start` here
        return
    except ConnectionError:
        pass
    cores = os.cpu_count() or 1
    ray.init(num_cpus=max(cores, math.ceil(cpus_needed)), include_dashboard=False, logging_level=logging.WARNING)
