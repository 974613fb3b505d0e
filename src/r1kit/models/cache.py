"""The KV-cache argument of a transformers forward: `cache` from transformers 5.24 on (`past_key_values`
there warns, and goes away in 5.40), `past_key_values` before (vLLM's CPU build pins transformers < 5.20).
Every forward r1kit runs with a cache names it through here, so no deprecated argument is on a hot path."""

from __future__ import annotations

from typing import Any

import transformers
from packaging.version import Version

CACHE_ARG = "cache" if Version(transformers.__version__).release >= (5, 24) else "past_key_values"


def cache_kwargs(cache: Any) -> dict[str, Any]:
    """Keyword arguments that run a forward on `cache` (None: the model makes a new one) and return it."""
    return {CACHE_ARG: cache, "use_cache": True}


def returned_cache(output: Any) -> Any:
    """The cache a forward returned."""
    return getattr(output, CACHE_ARG)
