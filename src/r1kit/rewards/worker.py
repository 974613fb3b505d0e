"""Rewards under a time limit: a forked worker process that runs the reward calls and is killed and
replaced when one overruns.

math_verify's alarms cannot stop code that hangs inside C (sympy, regex, gmpy), and a thread cannot be
interrupted at all, hence a process. Fork, not spawn: rewards registered or defined in the parent need no
pickling or importing. The worker stays up between calls, so the normal case costs one pipe round trip
per reward and batch; it is forked before any model loads, while the parent is small, and dies with its
parent."""

from __future__ import annotations

import atexit
import multiprocessing
import os
import random
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from r1kit.core.processes import die_with_parent, ignore_stop_signals
from r1kit.rewards.registry import RewardFn, RewardLog, invoke_reward, resolve_rewards


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: object  # multiprocessing.connection.Connection
    fns: tuple[RewardFn, ...]


_WORKER: _Worker | None = None


# Every function the worker must know; a replacement worker is forked with all of them.
_WORKER_FNS: tuple[RewardFn, ...] = ()


_ATEXIT_REGISTERED = False


def _input_seed(completions: list[str], answers: list[str]) -> int:
    """A seed that depends only on the batch, so a reward that draws random numbers is repeatable."""
    crc = 0
    for text in (*completions, "\0", *answers):
        crc = zlib.crc32(text.encode("utf-8", "surrogatepass") + b"\0", crc)
    return crc


def _worker_main(conn, parent_end, fns: tuple[RewardFn, ...], parent_pid: int) -> None:
    """Worker loop: receive (function index, completions, answers, keyword data per completion, keyword data
    shared by all), send back the outcome and what the reward logged."""
    parent_end.close()  # otherwise the worker would never see EOF when the parent goes away
    ignore_stop_signals()  # the trainer kills us with SIGKILL
    die_with_parent()
    if os.getppid() != parent_pid:
        return  # the parent died before prctl took effect
    while True:
        try:
            index, completions, answers, extra, shared = conn.recv()
        except (EOFError, OSError):
            return
        seed = _input_seed(completions, answers)
        random.seed(seed)
        np.random.seed(seed)
        log = RewardLog()
        try:
            scores = invoke_reward(fns[index], completions, answers, extra, shared, log)
            reply = ("ok", list(scores), log) if isinstance(scores, (list, tuple)) else \
                ("type", type(scores).__name__, None)
        except Exception as e:  # noqa: BLE001 - reported to the parent, which applies the failure policy
            reply = ("error", f"{type(e).__name__}: {e}", None)
        try:
            conn.send(reply)
        except Exception as e:  # noqa: BLE001 - e.g. scores or logged values that cannot be pickled
            conn.send(("error", f"scores could not be sent back ({type(e).__name__}: {e})", None))


def _start_worker(fns: tuple[RewardFn, ...]) -> _Worker:
    global _ATEXIT_REGISTERED
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    # tokenizers prints a warning at every fork once its thread pool has run, unless this is set
    os.environ["TOKENIZERS_PARALLELISM"] = saved or "false"
    try:
        process = ctx.Process(target=_worker_main, args=(child_end, parent_end, fns, os.getpid()),
                              name="r1kit-reward-worker", daemon=True)
        process.start()
    finally:
        if saved is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
    child_end.close()
    if not _ATEXIT_REGISTERED:
        # registered after multiprocessing's own exit hook, so it runs first: that hook would wait
        # for a worker that ignores SIGTERM
        atexit.register(close_reward_worker)
        _ATEXIT_REGISTERED = True
    return _Worker(process, parent_end, fns)


def close_reward_worker() -> None:
    """Stop the reward worker process, if any; the next call with a time limit starts a new one."""
    global _WORKER
    worker, _WORKER = _WORKER, None
    if worker is None:
        return
    worker.conn.close()
    worker.process.kill()
    worker.process.join(5)


def start_reward_worker(reward_funcs: list[str] | list[Callable]) -> None:
    """Fork the reward worker now, knowing these rewards (a fork is cheapest before a model is loaded)."""
    global _WORKER_FNS, _WORKER
    fns = [fn for item in reward_funcs for _, fn in resolve_rewards([item])]  # repeats allowed here
    missing = tuple(dict.fromkeys(fn for fn in fns if fn not in _WORKER_FNS))
    if missing or _WORKER is None or not _WORKER.process.is_alive():
        _WORKER_FNS = _WORKER_FNS + missing
        close_reward_worker()
        _WORKER = _start_worker(_WORKER_FNS)


def call_in_worker(fn: RewardFn, completions: list[str], answers: list[str], timeout: float,
                   extra: dict[str, list] | None = None, shared: dict | None = None) -> tuple[str, object, object]:
    """One reward call in the worker, waiting at most `timeout` seconds; a worker that overran is killed.
    Returns (status, scores or what went wrong, the RewardLog of what it logged or None)."""
    if _WORKER is None or fn not in _WORKER.fns or not _WORKER.process.is_alive():
        start_reward_worker([fn])
    worker = _WORKER
    try:
        worker.conn.send((worker.fns.index(fn), completions, answers, extra, shared))
        if worker.conn.poll(timeout):
            return worker.conn.recv()
        outcome = ("timeout", None, None)
    except (EOFError, OSError):  # killed, crashed in C code, out of memory
        worker.process.join(1)
        outcome = ("error", f"reward worker process died (exit code {worker.process.exitcode})", None)
    except BaseException:
        close_reward_worker()  # e.g. Ctrl-C while waiting: a reply may still be in flight
        raise
    close_reward_worker()
    return outcome
