"""gcpause.paused: the cyclic collector off for a block, then on again, nothing leaked."""

from __future__ import annotations

import gc
import weakref

from review_press import gcpause


class _Node:
    """An object that can be part of a reference cycle."""

    other: object = None


def test_the_collector_is_back_on_after_the_block_and_finds_its_garbage() -> None:
    assert gc.isenabled()
    with gcpause.paused():
        assert not gc.isenabled()
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle: only the collector frees it
        gone = weakref.ref(a)
        del a, b
    assert gc.isenabled() and gc.get_freeze_count() == 0  # nothing left frozen
    gc.collect()
    assert gone() is None


def test_the_collector_stays_off_when_it_was_off_and_on_after_an_error() -> None:
    gc.disable()
    try:
        with gcpause.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    try:
        with gcpause.paused():
            raise KeyError("planning failed")
    except KeyError:
        pass
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_what_another_part_of_the_process_froze_stays_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gcpause.paused():
            made = [_Node() for _ in range(100)]
        after = gc.get_freeze_count()  # frozen objects may still be freed meanwhile (by reference counting, on any thread)
        assert after > frozen // 2  # not emptied: `unfreeze` would have moved them all out
        assert after < frozen + len(made)  # and the block's own objects were not frozen with them
    finally:
        gc.unfreeze()


def _collector_on(_item: int) -> bool:
    return gc.isenabled()


def test_forked_workers_run_with_the_collector_on_though_the_build_paused_it() -> None:
    from review_press.forked import map_forked

    with gcpause.paused():
        assert map_forked(_collector_on, list(range(8)), threshold=1) == [True] * 8
