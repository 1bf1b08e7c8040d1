"""What a failed shard looks like to the caller: :class:`ShardError`, and
how a Ray actor error is read (a death or a restart)."""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence

__all__ = ["ShardError", "is_dead", "remaining"]


class ShardError(RuntimeError):
    """A shard of a :class:`ShardedIndex` failed: its actor died, did not
    answer within the timeout, lost changes made since the last save, or
    raised inside the actor.

    Attributes
    ----------
    shards : tuple of int
        The shards concerned, numbered from 0.
    """

    def __init__(self, message: str, shards: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.shards = tuple(int(s) for s in shards)


def is_dead(ray: Any, exc: BaseException) -> bool:
    """Whether a RayActorError means the actor is gone for good (Ray will not
    restart it) rather than restarting. Ray before 2.11 tells neither apart:
    every actor error counts as a death there, and the shard is respawned."""
    died = getattr(ray.exceptions, "ActorDiedError", None)
    unavailable = getattr(ray.exceptions, "ActorUnavailableError", None)
    if unavailable is not None and isinstance(exc, unavailable):
        return False
    return died is None or isinstance(exc, died) or unavailable is None


def remaining(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())
