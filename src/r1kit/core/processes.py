"""Helper processes (the reward worker, the generation worker): what they share about their lifetime."""

from __future__ import annotations

import ctypes
import signal


def die_with_parent() -> None:
    """Have Linux kill this process when its parent dies, even while it hangs in C code."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the worker still exits when its pipe closes, unless it is hung


def ignore_stop_signals() -> None:
    """Ctrl-C and SIGTERM reach the whole process group; stopping is the trainer's decision, and it kills
    its helpers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
