"""A fused decode path for Llama-family models (Llama, SmolLM2, Mistral, Qwen2): the rollout's forward.

Design decisions:
- Why not the transformers forward: decoding a 135M model on 2 CPU cores moves few FLOPs per step, so
  time goes to per-op overhead. The transformers forward runs 7 projections and ~40 small ops per layer
  per token; this one runs 4 matmuls (q|k|v fused, gate|up fused, o, down) and a handful of elementwise
  ops, over a KV cache preallocated for prompt + completion, so nothing is re-allocated per token.
- It is the same function as the model's forward. RMSNorm computes in float32; rotary embeddings come
  from the model's own rotary module and are applied with transformers' `apply_rotary_pos_emb`. `tests/test_decoder.py` checks logits
  against the model's forward; the rollout tests check sampled log-probs against a plain forward.
- Weights are a copy, in the rollout dtype (bfloat16 halves the bytes each decode step reads), taken
  with `r1kit.weights.merged_named_weights` (LoRA merged in). `load(policy)` refreshes them after each
  policy update.
- Kernels (`kernels`): "onednn" runs the four projections and the LM head through oneDNN with the
  weights prepacked once per load (`torch.ops.mkldnn._reorder_linear_weight`, the blocked layout
  torch's own CPU inductor passes use; vLLM's CPU backend prepacks for the same reason). At decode sizes
  the matmuls read every weight once per token and torch's plain `F.linear` reaches a fraction of the
  memory bandwidth: measured for these shapes at 16 rows, 41.6 ms plain against 16.6 ms prepacked in
  fp32 (9.1 against 12.7 ms in bf16). The result differs from `F.linear` by reduction order (~4e-6 in
  fp32); the prepacked weights replace the plain copies of those matrices, so memory stays one copy.
  "torch" is the plain path; "auto" is onednn where torch was built with it and the weights are on the CPU.
- Decoding (one query per row) uses two small matmuls per layer, grouped over the key/value heads, in
  place of SDPA, whose CPU kernel costs more than the arithmetic at this size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from r1kit.models.weights import copy_weights

SUPPORTED = ("llama", "mistral", "qwen2")
KERNELS = ("auto", "torch", "onednn")
PACK_ROWS = 16  # the row count oneDNN's layout is chosen for (any count works; 16 measured fastest at 16-64)


def resolve_kernels(kernels: str, device: torch.device | str) -> str:
    """"auto" -> "onednn" where torch has it and the weights are on the CPU, else "torch"."""
    if kernels not in KERNELS:
        raise ValueError(f"kernels={kernels!r}: choose one of {', '.join(KERNELS)}")
    onednn = torch.backends.mkldnn.is_available() and torch.device(device).type == "cpu"
    if kernels == "onednn" and not onednn:
        raise ValueError("kernels=onednn needs torch built with oneDNN and the weights on the CPU")
    return kernels if kernels != "auto" else ("onednn" if onednn else "torch")


def unsupported_reason(model: nn.Module) -> str | None:
    """Why `model` cannot use the fused decoder, or None if it can."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config
    if cfg.model_type not in SUPPORTED:
        return f"model_type {cfg.model_type!r} (supported: {', '.join(SUPPORTED)})"
    if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "mlp_bias", False):
        return "MLP other than SiLU-gated without bias"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return "sliding-window attention"
    if cfg.model_type != "qwen2" and getattr(cfg, "attention_bias", False):
        return "attention bias (o_proj bias has no place in the fused layout)"
    if getattr(cfg, "pretraining_tp", 1) != 1:
        return "pretraining_tp > 1"
    return None


class FusedDecoder:
    """Fused weights of a Llama-family causal LM and a decode loop's three operations: prefill, step, and
    row selection (repeat for G samples, drop finished rows)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None = None, kernels: str = "auto"):
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"the fused decoder does not support this model: {reason}")
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        cfg = base.config
        self.config = cfg
        self.generation_config = base.generation_config
        self.rotary = base.model.rotary_emb  # the model's own: every rope type and scaling it supports
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.scale = self.head_dim ** -0.5
        self.layers = cfg.num_hidden_layers
        self.dtype = dtype or next(base.parameters()).dtype
        self.device = next(base.parameters()).device
        self.bias = cfg.model_type == "qwen2"  # Qwen2 has q/k/v biases; o_proj and the MLP have none
        self.kernels = resolve_kernels(kernels, self.device)
        self.packed: dict[str, list[Tensor]] | None = None
        self._allocate()
        self.load(model)
        self.k_cache: list[Tensor] = []  # per layer [B, Hkv, capacity, D]
        self.v_cache: list[Tensor] = []
        self.length = 0

    def _allocate(self) -> None:
        """The plain fused tensors (and `_slots`, the parameter name -> view each is copied into)."""
        cfg = self.config
        H, Hkv, D, hid = self.heads, self.kv_heads, self.head_dim, cfg.hidden_size
        inter = cfg.intermediate_size
        new = lambda *shape: torch.empty(*shape, dtype=self.dtype, device=self.device)  # noqa: E731
        self.embed = new(cfg.vocab_size, hid)
        self.head = new(cfg.vocab_size, hid)
        self.norm = new(hid)
        self.wqkv = [new((H + 2 * Hkv) * D, hid) for _ in range(self.layers)]
        self.bqkv = [new((H + 2 * Hkv) * D) for _ in range(self.layers)] if self.bias else None
        self.wo = [new(hid, H * D) for _ in range(self.layers)]
        self.wgu = [new(2 * inter, hid) for _ in range(self.layers)]
        self.wdown = [new(hid, inter) for _ in range(self.layers)]
        self.ln1 = [new(hid) for _ in range(self.layers)]
        self.ln2 = [new(hid) for _ in range(self.layers)]
        self._slots = self._weight_slots(self.bias)

    def _weight_slots(self, bias: bool) -> dict[str, Tensor]:
        """Parameter name -> the view of a fused tensor it is copied into."""
        H, Hkv, D = self.heads, self.kv_heads, self.head_dim
        inter = self.config.intermediate_size
        q, k = H * D, Hkv * D
        slots = {"model.embed_tokens.weight": self.embed, "lm_head.weight": self.head, "model.norm.weight": self.norm}
        for i in range(self.layers):
            p = f"model.layers.{i}."
            slots |= {p + "self_attn.q_proj.weight": self.wqkv[i][:q], p + "self_attn.k_proj.weight": self.wqkv[i][q: q + k],
                      p + "self_attn.v_proj.weight": self.wqkv[i][q + k:], p + "self_attn.o_proj.weight": self.wo[i],
                      p + "mlp.gate_proj.weight": self.wgu[i][:inter], p + "mlp.up_proj.weight": self.wgu[i][inter:],
                      p + "mlp.down_proj.weight": self.wdown[i], p + "input_layernorm.weight": self.ln1[i],
                      p + "post_attention_layernorm.weight": self.ln2[i]}
            if bias:
                slots |= {p + "self_attn.q_proj.bias": self.bqkv[i][:q], p + "self_attn.k_proj.bias": self.bqkv[i][q: q + k],
                          p + "self_attn.v_proj.bias": self.bqkv[i][q + k:]}
        return slots

    def load(self, policy: nn.Module) -> None:
        """Copy the policy's current weights (LoRA merged) into the fused tensors (and prepack them)."""
        if self.packed is not None:  # the plain copies of the big matrices went into the packed ones
            self.packed = None
            self._allocate()
        seen = copy_weights(self._slots, policy)
        if "lm_head.weight" not in seen:  # tied embeddings appear under the embedding's name only
            with torch.no_grad():
                self.head.copy_(self.embed)
            seen.add("lm_head.weight")
        missing = set(self._slots) - seen
        if missing:
            raise ValueError(f"the policy has no weight {sorted(missing)[0]!r} ({len(missing)} missing)")
        if self.kernels == "onednn":
            self._prepack()

    def _prepack(self) -> None:
        """oneDNN's blocked layout for the projections and the LM head; the plain copies are dropped."""
        pack = lambda w: torch.ops.mkldnn._reorder_linear_weight(w, PACK_ROWS)  # noqa: E731
        self.packed = {name: [pack(w) for w in getattr(self, name)] for name in ("wqkv", "wo", "wgu", "wdown")}
        self.packed["head"] = [pack(self.head)]
        self.wqkv = self.wo = self.wgu = self.wdown = self.head = None
        self._slots = {}

    def _linear(self, x: Tensor, name: str, i: int = 0, bias: Tensor | None = None) -> Tensor:
        """x @ W.T (+ bias) for the fused matrix `name` (of layer i)."""
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed[name][i], bias, "none", [], "")
        w = self.head if name == "head" else getattr(self, name)[i]
        return F.linear(x, w, bias)

    def _rms(self, x: Tensor, w: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * xf.to(x.dtype)

    def _forward(self, ids: Tensor, positions: Tensor, mask: Tensor) -> Tensor:
        """Run `ids` [B, S] at `positions` [B, S] after the cached prefix; mask [B, 1, S, L] bool (True:
        attend) over the L = length + S keys. Appends K/V to the cache; returns last-position logits [B, V]."""
        B, S = ids.shape
        H, Hkv, D = self.heads, self.kv_heads, self.head_dim
        start, end = self.length, self.length + S
        x = F.embedding(ids, self.embed)  # [B, S, hid]
        cos, sin = self.rotary(x, positions)  # [B, S, D] in x's dtype
        for i in range(self.layers):
            h = self._rms(x, self.ln1[i])
            qkv = self._linear(h, "wqkv", i, None if self.bqkv is None else self.bqkv[i])  # [B, S, (H+2Hkv)D]
            q, k, v = qkv.view(B, S, H + 2 * Hkv, D).transpose(1, 2).split([H, Hkv, Hkv], dim=1)  # [B, h, S, D]
            q, k = apply_rotary_pos_emb(q, k, cos, sin)  # transformers' own rotation (Llama, Mistral, Qwen2)
            self.k_cache[i][:, :, start:end] = k
            self.v_cache[i][:, :, start:end] = v
            keys, values = self.k_cache[i][:, :, :end], self.v_cache[i][:, :, :end]  # [B, Hkv, L, D]
            if S == 1:  # one query per row: the H query heads as rows of their key/value group
                qg = q.reshape(B, Hkv, H // Hkv, D)  # [B, Hkv, rep, D]
                scores = torch.matmul(qg, keys.transpose(-1, -2)).float() * self.scale  # [B, Hkv, rep, L]
                scores = scores.masked_fill(~mask, float("-inf"))
                attn = torch.matmul(torch.softmax(scores, dim=-1).to(self.dtype), values)  # [B, Hkv, rep, D]
                attn = attn.reshape(B, 1, H * D)  # [B, 1, H*D]
            else:
                attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale,
                                                      enable_gqa=H != Hkv)  # [B, H, S, D]
                attn = attn.transpose(1, 2).reshape(B, S, H * D)  # [B, S, H*D]
            x = x + self._linear(attn, "wo", i)
            h = self._rms(x, self.ln2[i])
            gate, up = self._linear(h, "wgu", i).chunk(2, dim=-1)  # [B, S, I] each
            x = x + self._linear(F.silu(gate) * up, "wdown", i)
        self.length = end
        return self._linear(self._rms(x[:, -1], self.norm), "head")  # [B, V]

    @torch.no_grad()
    def prefill(self, prompt_ids: Tensor, prompt_mask: Tensor, positions: Tensor, capacity: int) -> Tensor:
        """Start a batch: allocate the cache for `capacity` positions and run the left-padded prompts
        [B, P]; returns the logits [B, V] that predict each row's first new token."""
        B, P = prompt_ids.shape
        shape = (B, self.kv_heads, max(capacity, P), self.head_dim)
        self.k_cache = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in range(self.layers)]
        self.v_cache = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in range(self.layers)]
        self.length = 0
        keep = prompt_mask.bool()  # [B, P]
        causal = torch.ones(P, P, dtype=torch.bool, device=keep.device).tril()  # [P, P]
        mask = causal[None] & keep[:, None, :]  # [B, P, P]
        # a padding query attends to itself, so no row of the mask is empty (an empty row gives NaN)
        mask = mask | torch.eye(P, dtype=torch.bool, device=keep.device)[None]
        return self._forward(prompt_ids, positions, mask[:, None])

    @torch.no_grad()
    def step(self, tokens: Tensor, attn: Tensor, positions: Tensor) -> Tensor:
        """One new token per row: tokens [A], attn [A, L] (1 on real keys, this token included),
        positions [A, 1]; returns logits [A, V]."""
        return self._forward(tokens[:, None], positions, attn.bool()[:, None, None, :])

    def repeat_rows(self, repeats: int) -> None:
        """Each cached row becomes `repeats` consecutive rows (a prompt's cache shared by its G samples)."""
        self.k_cache = [k.repeat_interleave(repeats, dim=0) for k in self.k_cache]
        self.v_cache = [v.repeat_interleave(repeats, dim=0) for v in self.v_cache]

    def select_rows(self, rows: Tensor) -> None:
        """Keep only cache rows `rows` (finished rows leave the decode batch)."""
        self.k_cache = [k[rows] for k in self.k_cache]
        self.v_cache = [v[rows] for v in self.v_cache]

    def release(self) -> None:
        """Free the cache between rollouts."""
        self.k_cache, self.v_cache, self.length = [], [], 0
