"""TRL / open-r1 recipe keys: the one table of TRL names that are not r1kit options.

A TRL or open-r1 GRPO recipe runs once its paths are changed. Each key below is one of:
- an alias: its value is an r1kit option under another name (or another spelling of the value);
- accepted as a no-op: it changes where or how results are published or how much is printed, never the
  training itself, so a recipe that sets it still runs (a note says it has no effect here);
- refused: r1kit cannot do what it asks; the error names the key and what to use instead.
Keys that are r1kit options with the same name and meaning (learning_rate, beta, num_generations,
logging_steps, report_to, seed, ...) need no entry."""

from __future__ import annotations

from typing import Any

from r1kit.core.errors import ConfigError


class _Refused(Exception):
    """A recipe key r1kit cannot honour; the message says what to use instead."""


def _to(option: str, value_map: dict | None = None):
    """An alias: the value goes to `option` (through value_map where given; a value not in it is refused)."""
    def convert(value):
        if value_map is None:
            return {option: value}
        key = value if isinstance(value, (str, bool, int, float)) or value is None else str(value)
        if key not in value_map:
            raise _Refused(f"r1kit takes {', '.join(map(repr, value_map))} here")
        mapped = value_map[key]
        return {} if mapped is _NOTHING else {option: mapped}
    return convert


_NOTHING = object()  # a value that is r1kit's behaviour already: nothing to set


def _only(allowed: tuple, instead: str):
    """Accepted when the value is one r1kit already behaves as (e.g. vllm_mode: colocate), else refused."""
    def convert(value):
        if value in allowed:
            return {}
        raise _Refused(instead)
    return convert


def _noop(note: str):
    def convert(value):
        return note
    return convert


def _refuse(instead: str):
    def convert(value):
        raise _Refused(instead)
    return convert


def _one_config(value):
    configs = value if isinstance(value, list) else [value]
    if len(configs) != 1:
        raise _Refused("r1kit trains on one dataset configuration: give dataset_config")
    return {"dataset_config": str(configs[0])}


def _save_strategy(value):
    if value == "steps":
        return {}
    if value in ("no", "epoch"):  # r1kit always saves at the end; no periodic checkpoints then
        return {"save_steps": 0}
    raise _Refused("use save_steps (0: only at the end)")


def _server_url(value):
    from urllib.parse import urlsplit

    url = urlsplit(str(value))
    if url.scheme != "http" or not url.hostname or url.path not in ("", "/"):
        raise _Refused("r1kit takes a server address as http://HOST:PORT (or vllm_server_host and vllm_server_port)")
    return {"vllm_server_host": url.hostname, "vllm_server_port": url.port or 80}


RECIPE_KEYS: dict[str, Any] = {
    # model
    "model_name_or_path": _to("model"),
    "torch_dtype": _to("dtype"),
    "bf16": _to("dtype", {True: "bfloat16", False: _NOTHING}),
    "fp16": _to("dtype", {True: "float16", False: _NOTHING}),
    "use_peft": _to("use_lora"),
    "model_revision": _only(("main", None), "download that revision and give its local folder as model"),
    "attn_implementation": _noop("r1kit chooses the attention kernels itself (its fused decoder or transformers' default)"),
    "gradient_checkpointing": _noop("r1kit does not checkpoint activations; it changes memory use, not results"),
    "gradient_checkpointing_kwargs": _noop("see gradient_checkpointing"),
    "chat_template": _refuse("r1kit uses the model's own chat template: edit chat_template in the model folder's tokenizer_config.json"),
    # data
    "dataset_name": _to("dataset"),
    "dataset_configs": _one_config,
    "dataset_train_split": _to("dataset_split"),
    "dataset_prompt_column": _to("question_field"),
    "dataset_test_split": _noop("evaluation during training uses eval_benchmark"),
    # rollout
    "use_vllm": _to("rollout_engine", {True: "vllm", False: _NOTHING}),
    "vllm_device": _only(("auto", None), "r1kit's colocated vLLM shares the training GPU; for other GPUs use vllm_mode: server"),
    "vllm_server_base_url": _server_url,
    "vllm_tensor_parallel_size": _only((1,), "r1kit's vLLM engine runs on one GPU per process: use 1"),
    "top_k": _only((None, 0, -1), "r1kit samples with temperature and top_p only: remove top_k"),
    "min_p": _only((None, 0, 0.0), "r1kit samples with temperature and top_p only: remove min_p"),
    "repetition_penalty": _only((1, 1.0), "r1kit samples without a repetition penalty: use 1.0"),
    "generation_batch_size": _refuse("r1kit generates each step's completions at once: per_device_train_batch_size x gradient_accumulation_steps"),
    "steps_per_generation": _refuse("use gradient_accumulation_steps (micro-batches per step) and num_iterations (updates per batch)"),
    "mask_truncated_completions": _only((False,), "r1kit trains on truncated completions; count them with the truncated_frac metric"),
    "log_completions": _to("log_completions_steps", {True: _NOTHING, False: 0}),
    # loss
    "scale_rewards": _to("scale_rewards", {True: True, False: False, "group": True, "none": False}),
    "importance_sampling_level": _only(("token",), "r1kit's ratios are per token: use importance_sampling_level: token"),
    "sync_ref_model": _only((False,), "r1kit's reference model stays the initial model: remove it"),
    "use_liger_kernel": _only((False,), "r1kit computes the loss itself: remove it"),
    "use_liger_loss": _only((False,), "r1kit computes the loss itself: remove it"),
    # optimisation and schedule
    "optim": _only(("adamw_torch", "adamw_torch_fused"), "r1kit trains with AdamW: remove optim"),
    "lr_scheduler_kwargs": _refuse("r1kit takes no scheduler arguments: use lr_scheduler_type constant, linear or cosine"),
    "deepspeed": _refuse("launch with `accelerate launch --config_file ...` instead"),
    "fsdp": _refuse("launch with `accelerate launch --config_file ...` instead"),
    "resume_from_checkpoint": _to("resume", {True: True, False: False}),
    # evaluation, logging, checkpoints, publishing
    "do_eval": _only((False,), "use eval_steps and eval_benchmark"),
    "eval_strategy": _only(("no",), "use eval_steps and eval_benchmark"),
    "evaluation_strategy": _only(("no",), "use eval_steps and eval_benchmark"),
    "per_device_eval_batch_size": _noop("evaluation during training is set by eval_num_samples"),
    "benchmarks": _refuse("use eval_benchmark (during training) or `r1kit eval --benchmark ...`"),
    "logging_strategy": _only(("steps",), "use logging_steps"),
    "logging_first_step": _noop("metrics.jsonl gets a line every logging_steps steps"),
    "log_level": _noop("r1kit prints one progress line per step"),
    "save_strategy": _save_strategy,
    "run_name": _noop("r1kit names tracker runs after output_dir"),
    "wandb_entity": _refuse("set the WANDB_ENTITY environment variable"),
    "wandb_project": _refuse("set the WANDB_PROJECT environment variable"),
    "push_to_hub": _noop("r1kit does not upload: upload OUTPUT_DIR/checkpoint-N with `hf upload`"),
    "hub_model_id": _noop("r1kit does not upload (see push_to_hub)"),
    "hub_strategy": _noop("r1kit does not upload (see push_to_hub)"),
    "hub_private_repo": _noop("r1kit does not upload (see push_to_hub)"),
    "callbacks": _noop("r1kit runs no TRL callbacks"),
}


def translate_recipe(data: dict[str, Any], source: str, notes: list[str] | None = None) -> dict[str, Any]:
    """The r1kit options of one source (a YAML file) written with TRL / open-r1 recipe keys.

    Keys of RECIPE_KEYS are translated; a refused key raises ConfigError naming the source, the key and
    what to use instead; accepted no-op keys are described in `notes`. A TRL key and the r1kit option it
    maps to, both given with different values, are an error rather than a silent choice.
    """
    out = {k: v for k, v in data.items() if k not in RECIPE_KEYS}
    for key, value in data.items():
        if key not in RECIPE_KEYS:
            continue
        try:
            result = RECIPE_KEYS[key](value)
        except _Refused as e:
            raise ConfigError(f"{source}: option '{key}: {value}' is not supported by r1kit; {e}") from None
        if isinstance(result, str):
            if notes is not None:
                notes.append(f"{key} ({result})")
            continue
        for option, mapped in result.items():
            if option in out and out[option] != mapped and option != key:
                raise ConfigError(f"{source}: '{key}: {value}' means {option}: {mapped}, but {option} is "
                                  f"{out[option]!r}; give one of them")
            out[option] = mapped
    return out
