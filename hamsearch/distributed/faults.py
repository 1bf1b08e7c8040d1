"""What a failed shard looks like to the caller (:class:`ShardError`), how
a Ray actor error is read (a death or a restart), and the one deadline a
call keeps from its start to its answer."""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence

__all__ = ["Deadline", "ShardError", "is_dead"]


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


class Deadline:
    """When a call must have its answer: ``timeout`` seconds (None: never)
    after the call began. Every wait of the call (its gather, a shard's
    restart, the reload of its file, the call sent again, the index's lock)
    takes what is left, so the call as a whole ends within ``timeout``."""

    __slots__ = ("timeout", "_at")

    def __init__(self, timeout: Optional[float]) -> None:
        self.timeout = timeout
        self._at = None if timeout is None else time.monotonic() + timeout

    def left(self) -> Optional[float]:
        """Seconds left (0 once passed), or None for no limit."""
        return None if self._at is None else max(0.0, self._at - time.monotonic())

    def passed(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at
