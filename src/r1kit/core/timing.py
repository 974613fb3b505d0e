"""Named timers for the phases of a step (verl's marked_timer): each phase of `grpo_step` runs inside
`timer(times, name)`, and the step logs `timing/<name>` for every phase with no bookkeeping of its own."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator


@contextlib.contextmanager
def timer(times: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the block to times[name]: a phase run several times in a step (dynamic
    sampling's rounds) is the sum of its runs."""
    start = time.perf_counter()
    try:
        yield
    finally:
        times[name] = times.get(name, 0.0) + time.perf_counter() - start
