"""Sparing the cyclic garbage collector's passes over what a build makes to keep.

Planning a build makes hundreds of thousands of small objects (posts from the cache, keys,
artifacts) and frees almost none of them: the collector's passes over them find nothing, yet
were a tenth of a nothing-changed build at 5,000 posts, and what it made young was scanned
again once the collector was back on. `paused` turns the passes off for a block, then moves
what the block made straight to the oldest generation (`gc.freeze`, `gc.unfreeze`), where a
later full pass still finds any garbage among it: nothing is leaked, it is only not looked at
now. Processes forked meanwhile (`forked`: the parsers of a cold build) turn the collector on
again for their own work.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Run a block without the cyclic collector's passes; what it made joins the oldest
    generation unscanned. Memory freed by reference counting is freed as ever. Objects another
    part of the process froze (`gc.freeze`) are left frozen: then the block's objects stay young."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:  # the permanent generation is ours to empty again
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()
