"""Calls from the driver to the shards: sending them, gathering the replies
in one ``ray.get``, and what happens when a shard dies, restarts or does not
answer in time (restore from its saved file and send the call again, or
raise :class:`ShardError`). One :class:`~.faults.Deadline` bounds each call
of the index, whatever it meets on the way."""
from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from .faults import Deadline, ShardError, is_dead

__all__ = ["CHANGES", "ShardCalls"]

logger = logging.getLogger("hamsearch.distributed")

CHANGES = ("add", "remove")  # shard methods that change its contents


class ShardCalls:
    """The call machinery of :class:`ShardedIndex`, which sets up the state
    it reads: ``_ray``, ``_actors``, ``_num_shards``, ``_timeout``,
    ``_lock``, ``_closed`` and per shard ``_sizes``, ``_tokens``
    (the incarnation the driver trusts), ``_retired`` (its earlier trusted
    incarnations), ``_saved`` (its file), ``_dirty`` (changed since),
    ``_lost`` (why it cannot come back), and ``_restarts``."""

    _ray: Any
    _actors: List[Any]
    _num_shards: int
    _timeout: Optional[float]
    _lock: threading.RLock
    _closed: bool
    _sizes: List[int]
    _tokens: List[Optional[str]]
    _retired: List[set]
    _saved: List[Optional[str]]
    _dirty: List[bool]
    _lost: List[Optional[str]]
    _restarts: int

    def _spawn(self, s: int, path: Optional[str]) -> Any:  # pragma: no cover - supplied by the index
        raise NotImplementedError

    def _usable(self, shards: Sequence[int]) -> None:
        if self._closed:
            raise RuntimeError("ShardedIndex: the index is closed")
        lost = [s for s in shards if self._lost[s] is not None]
        if lost:
            raise ShardError(f"shard {lost[0]} of {self._num_shards}: {self._lost[lost[0]]}", lost)

    @contextmanager
    def _locked(self, deadline: Deadline) -> Iterator[None]:
        """The index's lock, waited for no longer than the call's deadline."""
        left = deadline.left()
        if not self._lock.acquire(timeout=-1 if left is None else left):
            raise ShardError(f"ShardedIndex: the call waited the whole timeout of {deadline.timeout:g} s for "
                             "another add, remove, save or shard recovery to finish (see ShardedIndex.timeout)")
        try:
            yield
        finally:
            self._lock.release()

    def _timed_out(self, s: int, deadline: Deadline, while_: str) -> ShardError:
        return ShardError(f"shard {s} of {self._num_shards} did not answer within the timeout of "
                          f"{deadline.timeout:g} s ({while_}); the timeout bounds the whole call, restarts "
                          "and calls sent again included (see ShardedIndex.timeout)", [s])

    def _gather(self, calls: Sequence[Tuple[int, str, tuple]], first: bool = False,
                deadline: Optional[Deadline] = None) -> List[Any]:
        """Sends ``(shard, method, args)`` calls and gathers their payloads in
        one ``ray.get``; deals with restarts, deaths and timeouts, all within
        ``deadline`` (by default, the index's timeout from now)."""
        self._usable([s for s, _, _ in calls])
        ray = self._ray
        if deadline is None:
            deadline = Deadline(self._timeout)
        refs = [getattr(self._actors[s], method).remote(*args) for s, method, args in calls]
        error: Optional[BaseException] = None
        try:
            replies = ray.get(refs, timeout=deadline.left())
        except ray.exceptions.RayError as exc:
            replies, error = self._settle(calls, refs, exc, deadline)
        out = []
        for (s, method, args), reply in zip(calls, replies):
            if reply is None:  # failed: error says why
                out.append(None)
                continue
            token = reply[0]
            if first:
                self._tokens[s] = token
            elif token != self._tokens[s] and token not in self._retired[s]:
                reply = self._restarted(s, method, args, reply, deadline)
            self._sizes[s] = reply[2]
            out.append(reply[3])
        if error is not None:
            raise error
        return out

    def _settle(self, calls: Sequence[Tuple[int, str, tuple]], refs: List[Any], first_error: BaseException,
                deadline: Deadline) -> Tuple[List[Any], Optional[BaseException]]:
        """After a failed gather: each call's reply (or None), where a shard
        that was recovered answers the call sent again, and the ShardError
        naming the shards that failed or did not answer in time."""
        ray = self._ray
        exc_mod = ray.exceptions
        replies: List[Any] = [None] * len(refs)
        slow: List[int] = []
        failed: List[Tuple[int, BaseException]] = []
        for i, ((s, method, args), ref) in enumerate(zip(calls, refs)):
            try:
                replies[i] = ray.get(ref, timeout=deadline.left())
            except exc_mod.GetTimeoutError:
                slow.append(s)
                if method in CHANGES:
                    # The change may still happen, or not: the shard's
                    # contents are unknown from here on.
                    self._lose(s, f"it did not answer {method!r} within the timeout of {deadline.timeout:g} s")
            except exc_mod.RayActorError as exc:
                try:
                    replies[i] = self._recover_and_resend(s, method, args, exc, deadline)
                except ShardError as err:
                    failed.append((s, err))
            except exc_mod.RayError as exc:
                failed.append((s, exc))
        if slow:
            names = ", ".join(map(str, slow))
            err: BaseException = ShardError(
                f"shard{'s' if len(slow) > 1 else ''} {names} of {self._num_shards} did not answer within the "
                f"timeout of {deadline.timeout:g} s (a hung or overloaded node, an actor still waiting for CPUs "
                "on the cluster, or too short a timeout for this batch: see ShardedIndex.timeout)",
                slow + [f[0] for f in failed])
            err.__cause__ = first_error
            return replies, err
        if failed:
            s, exc = failed[0]
            if isinstance(exc, ShardError):
                return replies, exc
            cause = getattr(exc, "cause", None) or exc
            err = ShardError(f"shard {s} of {self._num_shards} failed: {type(cause).__name__}: {cause}",
                             [f[0] for f in failed])
            err.__cause__ = exc
            return replies, err
        return replies, None

    def _recoverable(self, s: int) -> bool:
        return self._saved[s] is not None and not self._dirty[s] and self._lost[s] is None

    def _lose(self, s: int, why: str, cause: Optional[BaseException] = None) -> ShardError:
        saved = self._saved[s]
        if saved is None:
            hint = "the index was never saved, so its codes are gone; build it again"
        elif self._dirty[s]:
            hint = (f"it had changed since it was last saved, so those changes are gone; "
                    f"load the index again from {os.path.dirname(saved)!r} (its last save)")
        else:
            hint = f"load the index again from {os.path.dirname(saved)!r}"
        self._lost[s] = f"{why}; {hint}"
        return ShardError(f"shard {s} of {self._num_shards}: {why}; {hint}", [s])

    def _recover_and_resend(self, s: int, method: str, args: tuple, exc: BaseException,
                            deadline: Deadline) -> Any:
        """Shard ``s`` died or restarted during ``method``: restore it from its
        file, if it has one and had not changed since, and send the call again."""
        died = is_dead(self._ray, exc)
        with self._locked(deadline):
            if not self._recoverable(s):
                what = "its actor died" if died else "its actor was restarted"
                raise self._lose(s, f"{what} ({type(exc).__name__})", exc) from exc
            self._restore(s, died, deadline)
        return self._resend(s, method, args, deadline)

    def _restarted(self, s: int, method: str, args: tuple, reply: Any, deadline: Deadline) -> Any:
        """A reply from a new incarnation of shard ``s`` (restarted between
        calls): valid if the shard held its saved file when the call began,
        else restore the shard and send the call again."""
        token, origin, _, _ = reply
        with self._locked(deadline):
            if not self._recoverable(s):
                raise self._lose(s, "its actor was restarted and came back without its codes")
            if origin == self._saved[s]:
                self._set_token(s, token)
                self._restarts += 1
                logger.warning("hamsearch: shard %d restarted and reloaded %s", s, origin)
                return reply
            self._restore(s, False, deadline)
        return self._resend(s, method, args, deadline)

    def _set_token(self, s: int, token: str) -> None:
        """Shard ``s`` now answers with ``token``; replies still on their way
        from its previous incarnation stay valid."""
        if self._tokens[s] is not None and self._tokens[s] != token:
            self._retired[s].add(self._tokens[s])
        self._tokens[s] = token

    def _restore(self, s: int, respawn: bool, deadline: Deadline) -> None:
        """Waits for shard ``s`` to be back (a new actor if Ray gave up on the
        old one) and makes it hold its saved file. Caller holds the lock.

        Running out of time here is the call's timeout, not the shard's
        loss: its file is still there, and the next call that meets the new
        incarnation restores it (the token it answers with is not trusted
        until then)."""
        ray = self._ray
        path = self._saved[s]
        if respawn:
            self._actors[s] = self._spawn(s, path)
        while True:
            try:
                reply = ray.get(self._actors[s].info.remote(), timeout=deadline.left())
                break
            except ray.exceptions.GetTimeoutError:
                raise self._timed_out(s, deadline, "it was restarting, and had not come back") from None
            except ray.exceptions.RayActorError as exc:
                if not is_dead(ray, exc):  # still restarting
                    if deadline.passed():
                        raise self._timed_out(s, deadline, "it was restarting, and had not come back") from None
                    time.sleep(0.05)
                    continue
                if respawn:
                    raise self._lose(s, f"a new actor for it died at once ({exc})") from exc
                respawn = True
                self._actors[s] = self._spawn(s, path)
        token, origin, size, info = reply
        if token == self._tokens[s]:  # another thread restored it meanwhile
            return
        if origin != path:
            try:
                token, origin, size, _ = ray.get(self._actors[s].reload.remote(path), timeout=deadline.left())
            except ray.exceptions.GetTimeoutError:
                raise self._timed_out(s, deadline, f"it had restarted, and was reloading {path}") from None
            except ray.exceptions.RayError as exc:
                raise self._lose(s, f"it could not reload {path} ({exc})", exc) from exc
        if size != self._sizes[s]:
            raise self._lose(s, f"it came back with {size} codes where it had {self._sizes[s]}")
        self._set_token(s, token)
        self._restarts += 1
        logger.warning("hamsearch: shard %d restarted and reloaded %s", s, path)

    def _resend(self, s: int, method: str, args: tuple, deadline: Deadline) -> Any:
        ray = self._ray
        try:
            reply = ray.get(getattr(self._actors[s], method).remote(*args), timeout=deadline.left())
        except ray.exceptions.GetTimeoutError as exc:
            if method in CHANGES:  # as in _settle: the shard's contents are unknown from here on
                raise self._lose(s, f"it did not answer {method!r}, sent again after its restart, within "
                                    f"the timeout of {deadline.timeout:g} s") from exc
            raise self._timed_out(s, deadline, f"{method!r} was sent again after its restart") from exc
        except ray.exceptions.RayError as exc:
            raise ShardError(f"shard {s} of {self._num_shards} failed again after its restart: {exc}", [s]) from exc
        if reply[0] != self._tokens[s]:
            raise self._lose(s, "it restarted again while answering")
        return reply
