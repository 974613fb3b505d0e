"""`r1kit vllm-serve`: a vLLM rollout server for vllm_mode=server (the trainer's side is r1kit.rollout.vllm_client).

Design decisions:
- The server holds one vllm.LLM whose engine core stays in this process (as the colocated engine), so a
  weight push is a direct `load_weights` call; it serves on its own GPUs, another node, or (CPU) another
  process of this machine. It answers JSON over HTTP (stdlib ThreadingHTTPServer: one thread per request,
  the LLM behind one lock, which vLLM's offline LLM needs) on these paths:
    GET  /health          model, max_model_len, dtype, backend of the weight group, weights version
    POST /generate        {prompts: [[token ids]], n, max_tokens, temperature, top_p, stop, ignore_eos, seed,
                           version} -> {samples: [[{token_ids, logprobs, finish_reason}]]}
    POST /init_weight_group {port}: host the two-rank weight group's store and join it as rank 0
    POST /update_weights  {tensors: [[name, shape]], dtype}: receive one bucket by broadcast, then load it
    POST /commit_weights  {version}: wait for the buckets, reset the prefix cache, set the version
- A push is one vLLM reload (vllm_engine.load_weights_into) fed by an iterator on a thread of its own:
  /update_weights queues a bucket's names and shapes and answers at once, the trainer then broadcasts
  the bucket, and the iterator receives it and hands its tensors on; /commit_weights ends the iterator.
  So the buckets load in order, one bucket in memory at a time. A reload that fails takes the rest of
  the broadcasts anyway, so the trainer is told by /commit_weights instead of waiting on a broadcast.
- /generate with a `version` waits (up to --timeout) for the weights of exactly that version: a process
  of a multi-process trainer may ask before the main process has pushed the step's weights. None (a
  client that never pushes) samples from whatever is loaded.
- Bad requests (a prompt too long for --max_model_len) answer 400 with the reason, which the client
  raises as a ConfigError; anything else 500.
"""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from r1kit.core.errors import ConfigError
from r1kit.rollout.vllm_client import SERVER_RANK, broadcast, open_weight_group
from r1kit.rollout.vllm_engine import TORCH_DTYPES, build_llm, engine_max_model_len, load_weights_into, sample_with_llm


class RolloutServer:
    """The server's state: the LLM, its lock, the weight group and the loaded weights' version."""

    def __init__(self, llm: Any, *, model: str, max_model_len: int, dtype: str, host: str, timeout: float) -> None:
        self.llm, self.model, self.dtype, self.host, self.timeout = llm, model, dtype, host, timeout
        self.max_model_len = engine_max_model_len(llm, max_model_len)
        self.backend = "nccl" if torch.cuda.is_available() else "gloo"
        self.lock = threading.Lock()  # around every use of the LLM
        self.loaded = threading.Condition()  # notified when `version` changes
        self.version: int | None = None
        self.group: Any = None
        self._store: Any = None
        self._joining: threading.Thread | None = None  # joining the weight group
        self._reloading: threading.Thread | None = None  # a push being loaded
        self._buckets: queue.Queue = queue.Queue()
        self._reload_error: str | None = None

    def health(self, _: dict) -> dict:
        return {"model": self.model, "max_model_len": self.max_model_len, "dtype": self.dtype,
                "backend": self.backend, "version": self.version}

    def generate(self, req: dict) -> dict:
        self._wait_for_version(req.get("version"))
        with self.lock:
            groups = sample_with_llm(self.llm, req["prompts"], num_generations=req["n"], max_new_tokens=req["max_tokens"],
                                     temperature=req["temperature"], top_p=req["top_p"], stop_strings=req["stop"],
                                     ignore_eos=req["ignore_eos"], seed=req["seed"], max_model_len=self.max_model_len)
        return {"samples": [[vars(s) for s in group] for group in groups]}

    def _wait_for_version(self, version: int | None) -> None:
        if version is None:
            return
        with self.loaded:
            if not self.loaded.wait_for(lambda: self.version == version, timeout=self.timeout):
                raise TimeoutError(f"the weights of version {version} did not arrive within {self.timeout:g} s "
                                   f"(loaded: {self.version})")

    def init_weight_group(self, req: dict) -> dict:
        self.group = self._store = None  # a trainer that comes back (a resume) gets a new group, same port

        def join() -> None:  # blocks until the trainer joins as rank 1
            self._store, self.group = open_weight_group(self.host, int(req["port"]), SERVER_RANK, self.backend,
                                                        self.timeout)
        self._joining = threading.Thread(target=join, daemon=True)
        self._joining.start()
        return {"ok": True}

    def update_weights(self, req: dict) -> dict:
        """Queue one bucket's description; its tensor arrives by broadcast right after this answer."""
        if self._reloading is None:  # the first bucket of a push: start the reload that consumes them
            self._buckets = queue.Queue()
            self._reload_error = None
            self._reloading = threading.Thread(target=self._reload, args=(self._buckets,), daemon=True)
            self._reloading.start()
        self._buckets.put((TORCH_DTYPES[req["dtype"]], [(name, tuple(shape)) for name, shape in req["tensors"]]))
        return {"ok": True}

    def commit_weights(self, req: dict) -> dict:
        """The push is complete: wait for the reload, reset the prefix cache, take on the version."""
        if self._reloading is not None:
            self._buckets.put(None)
            self._reloading.join()
            self._reloading = None
        if self._reload_error is not None:
            raise RuntimeError(f"the weight push failed: {self._reload_error}")
        with self.lock:
            self.llm.reset_prefix_cache()  # its KV blocks were computed with the old weights
        with self.loaded:
            self.version = req["version"]
            self.loaded.notify_all()
        return {"ok": True, "version": self.version}

    def _reload(self, buckets: queue.Queue) -> None:
        """One vLLM reload over every bucket of a push, each received as it comes (bounded memory)."""
        if self._joining is not None:
            self._joining.join()

        def received():
            while (bucket := buckets.get()) is not None:
                yield from self._receive(*bucket)
        stream = received()
        try:
            with self.lock:
                load_weights_into(self.llm, stream)
            for _ in stream:  # vLLM stopped early: the trainer still sends the rest
                pass
        except Exception as err:
            self._reload_error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            try:
                for _ in stream:  # take the rest of the broadcasts, so the trainer is not left waiting
                    pass
            except Exception:
                pass

    def _receive(self, dtype: torch.dtype, tensors: list[tuple[str, tuple[int, ...]]]):
        sizes = [torch.Size(shape).numel() for _, shape in tensors]
        flat = torch.empty(sum(sizes), dtype=dtype, device="cuda" if self.backend == "nccl" else "cpu")  # [numel]
        broadcast(self.group, flat)
        for (name, shape), view in zip(tensors, flat.split(sizes)):
            yield name, view.view(shape)


ROUTES = {("GET", "/health"): RolloutServer.health, ("POST", "/generate"): RolloutServer.generate,
          ("POST", "/init_weight_group"): RolloutServer.init_weight_group,
          ("POST", "/update_weights"): RolloutServer.update_weights,
          ("POST", "/commit_weights"): RolloutServer.commit_weights}


def make_handler(server: RolloutServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            route = ROUTES.get((method, self.path))
            if route is None:
                return self._send(404, {"error": f"no {method} {self.path}"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
                req = json.loads(self.rfile.read(length)) if length else {}
                self._send(200, route(server, req))
            except (ConfigError, KeyError, ValueError) as err:
                self._send(400, {"error": str(err)})
            except Exception as err:
                self._send(500, {"error": f"{type(err).__name__}: {err}"})

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, *args) -> None:  # one line per request would drown the server's own log
            pass
    return Handler


def serve(model: str, *, host: str = "127.0.0.1", port: int = 8000, dtype: str = "bfloat16",
          gpu_memory_utilization: float = 0.9, max_model_len: int = 2048, seed: int = 0, enforce_eager: bool = False,
          kv_cache_memory_bytes: int = 0, timeout: float = 240.0) -> None:
    """Build the LLM and answer requests until interrupted."""
    llm = build_llm(model, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                    seed=seed, enforce_eager=enforce_eager, kv_cache_memory_bytes=kv_cache_memory_bytes)
    state = RolloutServer(llm, model=model, max_model_len=max_model_len, dtype=dtype, host=host, timeout=timeout)
    httpd = ThreadingHTTPServer((host, port), make_handler(state))
    print(f"r1kit vllm-serve: {model} on http://{host}:{port} (max_model_len {state.max_model_len}, {dtype}, "
          f"weights through {state.backend})", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
