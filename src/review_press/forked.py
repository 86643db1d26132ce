"""Work over a list on every core: forked processes that inherit the list and the function
(nothing is pickled to them, so a closure works and a large input costs no copy), each doing a
range of it; the results come back in order. Used where a build's work is pure: parsing posts
(`content`) and rendering artifacts (`output`).
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_WORK: tuple[Callable[[Any], Any] | None, Sequence[Any]] = (None, ())  # what the forked processes inherit


def when_parent_is_gone(parent: int, then: Callable[[], None]) -> None:
    """Run `then` (in a daemon thread of this process) as soon as the process `parent` that
    started this one is gone (SIGKILL, out of memory): a child must not outlive the work it was
    started for, waiting on its parent's queue forever or sending on without it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        then()

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _start_worker(parent: int) -> None:
    """A pool process's initializer: end it when the build that forked it is gone, and turn the
    cyclic collector on (a build plans with it paused, `gcpause`, and its forks inherit that):
    the work done here frees its garbage as ever."""
    gc.enable()
    when_parent_is_gone(parent, lambda: os._exit(1))


def _run(start: int, stop: int) -> list[Any]:
    """In a forked process: the function over its range of the items."""
    fn, items = _WORK
    assert fn is not None
    return [fn(item) for item in items[start:stop]]


def map_forked(fn: Callable[[T], R], items: Sequence[T], threshold: int) -> list[R]:
    """`[fn(item) for item in items]`, on every core (up to 8) when there are at least
    `threshold` items and the platform can fork; in this process otherwise."""
    workers = min(os.cpu_count() or 1, 8)
    if len(items) < threshold or workers < 2:
        return [fn(item) for item in items]
    import multiprocessing as mp  # imported when there is work for a pool: a build with nothing to do never needs one
    from concurrent.futures import ProcessPoolExecutor

    if "fork" not in mp.get_all_start_methods():
        return [fn(item) for item in items]
    global _WORK
    _WORK = (fn, items)
    try:
        step = max(1, len(items) // (workers * 8))
        starts = range(0, len(items), step)
        context = mp.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)) as pool:
            return [r for part in pool.map(_run, starts, [min(s + step, len(items)) for s in starts]) for r in part]
    finally:
        _WORK = (None, ())
