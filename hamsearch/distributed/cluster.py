"""Ray itself: importing it on first use, joining or starting the cluster
the shards run on, and the CPUs each shard reserves on it."""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Optional

__all__ = ["CPU_GRAIN", "INSTALL_HINT", "check_fits", "connect", "fitting_cpus", "ray_module"]

INSTALL_HINT = 'pip install "hamsearch[distributed]"'
CPU_GRAIN = 10_000  # Ray counts a fraction of a resource in steps of 1/10000


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


def fitting_cpus(num_shards: int, total: float) -> float:
    """CPUs a shard reserves by default on a cluster of ``total`` CPUs: one
    where there is a CPU for every shard, else an equal share of them all,
    rounded down to Ray's grain so that every shard fits (a saved index keeps
    its shard count, whatever cluster loads it)."""
    if num_shards <= total + 1e-9:
        return 1
    share = math.floor(total * CPU_GRAIN / num_shards) / CPU_GRAIN
    if share <= 0:
        raise ValueError(f"num_shards: expected at most {math.floor(total * CPU_GRAIN)} shards on the cluster's "
                         f"{total:g} CPUs (Ray shares a CPU in steps of 1/{CPU_GRAIN}), got {num_shards}; "
                         "use a larger cluster")
    return share


def check_fits(num_shards: int, cpus: float, total: float) -> None:
    """An explicit ``num_cpus_per_shard`` that the cluster can never grant
    to every shard is an error rather than a wait until the timeout."""
    if num_shards * cpus > total + 1e-9:
        raise ValueError(
            f"num_shards * num_cpus_per_shard: expected at most the cluster's {total:g} CPUs, got "
            f"{num_shards} * {cpus} = {num_shards * cpus:g}; the actors could never all start "
            "(use fewer shards, a fractional num_cpus_per_shard, or a larger cluster)"
        )
