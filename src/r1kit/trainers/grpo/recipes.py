"""TRL / open-r1 recipes: the table of TRL's names that are not r1kit options (`RECIPE_KEYS`), the table of
r1kit defaults that differ from TRL's (`TRL_DEFAULTS`), and how GRPOConfig reads its sources with them
(`read_recipe`, called by core.options.build_dataclass for the YAML file and the command line alike).

Each key of RECIPE_KEYS is one of:
- an alias: its value is an r1kit option under another name (or another spelling of the value), so every
  value the option accepts passes;
- accepted: r1kit already behaves as the key asks with the values listed (`vllm_mode`-like switches left at
  TRL's default), any other value is refused;
- without effect: it changes where or how results are published, printed or stored, never the training,
  so a recipe that sets it still runs (a notice says it has no effect here);
- refused: r1kit cannot do what it asks; the error names the key and what to use instead.
TRL names that are r1kit options with the same meaning (learning_rate, beta, num_generations, ...) need no
row; tests/test_trl_recipes.py walks both tables against the options and against TRL 1.16's own fields and
defaults, so they cannot drift. A source that uses TRL's names is read as TRL reads it: its prompts go
through the chat template (no system message but `system_prompt`), as open-r1 builds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from r1kit.core.errors import ConfigError
from r1kit.core.options import Reading
from r1kit.rewards.registry import reward_name_notice


class _Refused(Exception):
    """A recipe value r1kit cannot honour; the message says what to use instead."""


_SAME = object()  # a TRL value that is r1kit's behaviour already: nothing to set


@dataclass(frozen=True)
class _Not:
    """A TRL value that rules one setting out (use_vllm: false: not vllm): where an earlier source chose that
    setting, the option goes back to `fallback`; otherwise nothing is set."""

    value: Any
    fallback: Any


@dataclass(frozen=True)
class RecipeKey:
    """What r1kit does with one TRL / open-r1 name (see the module docstring)."""

    type: type = str  # the value's type: how `--KEY VALUE` reads on the command line
    option: str | None = None  # alias: the r1kit option it sets
    values: dict | None = None  # alias: TRL value -> r1kit value (_SAME: nothing to set); other values refused
    accepts: tuple | None = None  # accepted with these values only, as nothing to set
    note: str = ""  # without effect: why; refused (or outside `accepts`/`values`): what to use instead
    convert: Callable[[Any], dict] | None = None  # a value that needs reading (a URL, a list of configs)
    refused: bool = False  # r1kit cannot do what it asks, whatever the value

    @property
    def kind(self) -> str:
        if self.option is not None or self.convert is not None:
            return "alias"
        if self.accepts is not None:
            return "accepted"
        return "refused" if self.refused else "without effect"

    def describe(self) -> str:
        """What r1kit does with the key, in a few words (the command line's --help, docs/trl.md)."""
        if self.option is not None and self.values is not None:
            return ", ".join(f"{str(k).lower()}: " + ("as r1kit does already" if v is _SAME else
                                                      f"{self.option} back to {v.fallback} where it was {v.value}"
                                                      if isinstance(v, _Not) else
                                                      f"{self.option} {v}") for k, v in self.values.items())
        if self.option is not None:
            return f"= {self.option}"
        if self.convert is not None:
            return (self.convert.__doc__ or "").strip()
        if self.accepts is not None:
            return f"accepted as {' or '.join(map(repr, self.accepts))}; otherwise refused: {self.note}"
        return f"refused: {self.note}" if self.refused else f"no effect: {self.note}"

    def translate(self, value: Any) -> dict[str, Any] | str:
        """The r1kit options the value sets, or (without effect) the note to print; _Refused otherwise."""
        if self.convert is not None:
            return self.convert(value)
        if self.option is not None and self.values is None:
            return {self.option: value}
        if self.option is not None:
            key = value if isinstance(value, (str, bool, int, float)) or value is None else str(value)
            if key not in self.values:
                raise _Refused(self.note or f"r1kit takes {', '.join(map(repr, self.values))} here")
            return {} if self.values[key] is _SAME else {self.option: self.values[key]}
        if self.accepts is not None:
            if value in self.accepts:
                return {}
            raise _Refused(self.note)
        if self.refused:
            raise _Refused(self.note)
        return self.note


def alias(option: str, type: type = str, values: dict | None = None, note: str = "") -> RecipeKey:
    return RecipeKey(type, option=option, values=values, note=note)


def only(accepts: tuple, instead: str, type: type = bool) -> RecipeKey:
    return RecipeKey(type, accepts=accepts, note=instead)


def noop(note: str, type: type = str) -> RecipeKey:
    return RecipeKey(type, note=note)


def refuse(instead: str, type: type = str) -> RecipeKey:
    return RecipeKey(type, note=instead, refused=True)


def _one_config(value: Any) -> dict:
    """dataset_config, when it names one configuration"""
    configs = value if isinstance(value, list) else [value]
    if len(configs) != 1:
        raise _Refused("r1kit trains on one dataset configuration: give dataset_config")
    return {"dataset_config": str(configs[0])}


def _save_strategy(value: Any) -> dict:
    """steps: as r1kit does; no or epoch: save_steps 0 (a checkpoint at the end only)"""
    if value == "steps":
        return {}
    if value in ("no", "epoch"):  # r1kit always saves at the end; no periodic checkpoints then
        return {"save_steps": 0}
    raise _Refused("use save_steps (0: only at the end)")


def _server_url(value: Any) -> dict:
    """http://HOST:PORT: vllm_server_host and vllm_server_port"""
    from urllib.parse import urlsplit

    url = urlsplit(str(value))
    if url.scheme != "http" or not url.hostname or url.path not in ("", "/"):
        raise _Refused("r1kit takes a server address as http://HOST:PORT (or vllm_server_host and vllm_server_port)")
    return {"vllm_server_host": url.hostname, "vllm_server_port": url.port or 80}


def _resume(value: Any) -> dict:
    """true / false: resume (from the last checkpoint in output_dir); a path is refused"""
    word = str(value).lower()
    if value is None or word in ("true", "false"):
        return {} if value is None else {"resume": word == "true"}
    raise _Refused("r1kit resumes from the last checkpoint in output_dir: use resume: true")


def _clip_max(value: Any) -> dict:
    """= importance_sampling_cap (null refused: r1kit needs an upper bound)"""
    if value is None:
        raise _Refused("r1kit's correction needs an upper bound: give a number, or importance_sampling_cap: 0 for none")
    return {"importance_sampling_cap": value}


_PUBLISH = "r1kit does not upload: upload OUTPUT_DIR/checkpoint-N with `hf upload`"
_OPEN_R1_REWARD = "a parameter of one of open-r1's own rewards; name the reward function itself in reward_funcs"
_NO_EVAL = "evaluation during training is eval_steps and eval_benchmark"

RECIPE_KEYS: dict[str, RecipeKey] = {
    # model (TRL's ModelConfig)
    "model_name_or_path": alias("model"),
    "torch_dtype": alias("dtype"),
    "bf16": alias("dtype", bool, {True: "bfloat16", False: _Not("bfloat16", "auto")}),
    "fp16": alias("dtype", bool, {True: "float16", False: _Not("float16", "auto")}),
    "use_peft": alias("use_lora", bool),
    "model_revision": only(("main", None), "download that revision and give its local folder as model", str),
    "model_init_kwargs": only((None, {}), "r1kit loads the model itself: use dtype and trust_remote_code", dict),
    "attn_implementation": noop("r1kit chooses the attention kernels (its fused decoder or transformers' default)"),
    "gradient_checkpointing": noop("r1kit does not checkpoint activations; memory use, not results", bool),
    "gradient_checkpointing_kwargs": noop("see gradient_checkpointing", dict),
    "use_liger_kernel": noop("a memory-saving kernel for the same loss; r1kit computes its loss itself", bool),
    "use_liger_loss": noop("see use_liger_kernel", bool),
    "cast_lm_head_to_fp32": only((False,), "r1kit computes log-probs in the policy's dtype: use dtype: float32"),
    "disable_dropout": only((False,), "r1kit trains with the model's own dropout (0 in most LLMs): remove it"),
    "router_aux_loss_coef": only((None,), "r1kit adds no MoE router loss: remove it", float),
    "lora_task_type": only(("CAUSAL_LM",), "r1kit trains causal LMs", str),
    "lora_target_parameters": only((None, []), "use lora_target_modules", list),
    "lora_modules_to_save": only((None, []), "r1kit's adapters train only the LoRA matrices", list),
    "use_rslora": only((False,), "r1kit trains plain LoRA"),
    "use_dora": only((False,), "r1kit trains plain LoRA"),
    "load_in_8bit": only((False,), "r1kit trains unquantized weights: use dtype"),
    "load_in_4bit": only((False,), "r1kit trains unquantized weights: use dtype"),
    "bnb_4bit_quant_type": noop("quantization settings; r1kit trains unquantized weights"),
    "bnb_4bit_quant_storage": noop("quantization settings; r1kit trains unquantized weights"),
    "use_bnb_nested_quant": noop("quantization settings; r1kit trains unquantized weights", bool),
    # data (TRL's ScriptArguments, open-r1's GRPOScriptArguments)
    "dataset_name": alias("dataset"),
    "dataset_configs": RecipeKey(list, convert=_one_config),
    "dataset_train_split": alias("dataset_split"),
    "dataset_prompt_column": alias("question_field"),
    "dataset_test_split": noop(_NO_EVAL),
    "dataset_streaming": only((False,), "r1kit reads the dataset into memory"),
    "dataset_mixture": refuse("r1kit trains on one dataset: give dataset_name (or dataset)", dict),
    "datasets": refuse("r1kit trains on one dataset: give dataset_name (or dataset)", list),
    "ignore_bias_buffers": noop("a DDP setting of TRL's scripts", bool),
    "shuffle_dataset": only((True,), "r1kit draws prompts in a seeded shuffled order"),
    "remove_unused_columns": noop("r1kit passes every dataset column to the rewards, as TRL does with False", bool),
    "reward_model_name_or_path": refuse("r1kit scores reasoning prompts with rule rewards; reward_model scores the "
                                        "general prompts of general_dataset (R1's stage 4)"),
    # rollout
    "use_vllm": alias("rollout_engine", bool, {True: "vllm", False: _Not("vllm", "auto")}),
    "vllm_device": only(("auto", None), "r1kit's colocated vLLM shares the training GPU; for other GPUs use "
                                        "vllm_mode: server", str),
    "vllm_server_base_url": RecipeKey(str, convert=_server_url),
    "vllm_tensor_parallel_size": only((1,), "r1kit's vLLM engine runs on one GPU per process: use 1", int),
    "vllm_model_impl": only(("vllm",), "r1kit's vLLM engine uses vLLM's own model code", str),
    "vllm_structured_outputs_regex": only((None,), "r1kit samples without structured outputs", str),
    "vllm_max_model_length": noop("r1kit sizes vLLM's context as max_prompt_length + max_completion_length", int),
    "vllm_importance_sampling_correction": alias("importance_sampling_cap", bool, {True: _Not(0.0, None), False: 0.0}),
    "vllm_importance_sampling_mode": alias("importance_sampling_mode"),
    "vllm_importance_sampling_clip_max": RecipeKey(float, convert=_clip_max),
    "vllm_importance_sampling_cap": RecipeKey(float, convert=_clip_max),
    "vllm_importance_sampling_clip_min": only((None,), "r1kit's masks keep weights in [1/C, C]: remove it", float),
    "top_k": only((None, 0, -1), "r1kit samples with temperature and top_p only: remove top_k", int),
    "min_p": only((None, 0, 0.0), "r1kit samples with temperature and top_p only: remove min_p", float),
    "repetition_penalty": only((1, 1.0), "r1kit samples without a repetition penalty: use 1.0", float),
    "generation_kwargs": only((None, {}), "r1kit samples with temperature, top_p and stop_strings: set those", dict),
    "chat_template_kwargs": only((None, {}), "r1kit renders the chat template without extra arguments", dict),
    "cache_implementation": noop("r1kit's decoders keep their own KV cache"),
    "ds3_gather_for_generation": noop("a DeepSpeed ZeRO-3 setting; r1kit shards with FSDP2", bool),
    "pad_to_multiple_of": noop("padding for speed; r1kit pads as its decoder needs"),
    "use_transformers_paged": noop("a transformers generation backend; r1kit uses its own decoders", bool),
    "use_transformers_continuous_batching": noop("a transformers generation backend; r1kit uses its own decoders", bool),
    "transformers_continuous_batching_config": noop("see use_transformers_continuous_batching", dict),
    "max_tool_calling_iterations": only((None,), "r1kit trains single-turn completions without tools", int),
    "generation_batch_size": refuse("r1kit generates each step's completions at once: per_device_train_batch_size x "
                                    "gradient_accumulation_steps", int),
    "steps_per_generation": refuse("use gradient_accumulation_steps (micro-batches per step) and num_iterations "
                                   "(updates per batch)", int),
    "num_generations_eval": noop(_NO_EVAL, int),
    # loss
    "sync_ref_model": only((False,), "r1kit's reference model stays the initial model: remove it"),
    "ref_model_mixup_alpha": noop("applies only with sync_ref_model", float),
    "ref_model_sync_steps": noop("applies only with sync_ref_model", int),
    "use_bias_correction_kl": only((False,), "r1kit's KL term is the paper's k3 estimator without the importance "
                                             "ratio (see TRL_DEFAULTS): remove it"),
    "delta": only((None,), "r1kit clips the ratio with epsilon and epsilon_high only: remove delta", float),
    "off_policy_mask_threshold": only((None,), "r1kit has no off-policy sequence mask: remove it", float),
    "multi_objective_aggregation": only(("sum_then_normalize",), "r1kit sums the weighted rewards, then "
                                                                 "normalises (sum_then_normalize)", str),
    "vespo_k_pos": noop("applies to loss_type vespo, which r1kit does not have", float),
    "vespo_lambda_pos": noop("applies to loss_type vespo, which r1kit does not have", float),
    "vespo_k_neg": noop("applies to loss_type vespo, which r1kit does not have", float),
    "vespo_lambda_neg": noop("applies to loss_type vespo, which r1kit does not have", float),
    "use_adaptive_entropy": only((False,), "r1kit's entropy bonus is a fixed entropy_coef"),
    "entropy_coef_min": noop("applies only with use_adaptive_entropy", float),
    "entropy_coef_max": noop("applies only with use_adaptive_entropy", float),
    "entropy_coef_delta": noop("applies only with use_adaptive_entropy", float),
    "entropy_target": noop("applies only with use_adaptive_entropy", float),
    # optimisation and schedule
    "optim": only(("adamw_torch", "adamw_torch_fused"), "r1kit trains with AdamW: remove optim", str),
    "lr_scheduler_kwargs": only((None, {}), "r1kit takes no scheduler arguments: use lr_scheduler_type constant, "
                                            "linear or cosine", dict),
    "deepspeed": refuse("launch with `accelerate launch --config_file ...` instead"),
    "num_processes": refuse("launch with `accelerate launch --num_processes N $(which r1kit) grpo ...`", int),
    "accelerate_config": refuse("launch with `accelerate launch --config_file FILE $(which r1kit) grpo ...`"),
    "fsdp": refuse("launch with `accelerate launch --config_file ...` instead"),
    "resume_from_checkpoint": RecipeKey(str, convert=_resume),
    "torch_empty_cache_steps": noop("frees cached GPU memory; memory use, not results", int),
    # evaluation, logging, checkpoints, publishing
    "do_eval": only((False,), "use eval_steps and eval_benchmark"),
    "eval_strategy": only(("no",), "use eval_steps and eval_benchmark", str),
    "evaluation_strategy": only(("no",), "use eval_steps and eval_benchmark", str),
    "per_device_eval_batch_size": noop(_NO_EVAL, int),
    "benchmarks": refuse("use eval_benchmark (during training) or `r1kit eval --benchmark ...`", list),
    "logging_strategy": only(("steps",), "use logging_steps", str),
    "logging_first_step": noop("metrics.jsonl gets a line every logging_steps steps", bool),
    "log_level": noop("r1kit prints one progress line per step"),
    "log_completions": alias("log_completions_steps", bool, {True: _SAME, False: 0}),
    "num_completions_to_print": noop("samples.jsonl keeps every completion", int),
    "log_unique_prompts": noop("samples.jsonl keeps every prompt", bool),
    "log_multimodal": noop("r1kit trains on text", bool),
    "wandb_log_unique_prompts": noop("samples.jsonl keeps every prompt", bool),
    "log_completions_hub_repo": noop(_PUBLISH),
    "save_strategy": RecipeKey(str, convert=_save_strategy),
    "run_name": noop("r1kit names tracker runs after output_dir"),
    "wandb_entity": refuse("set the WANDB_ENTITY environment variable"),
    "wandb_project": refuse("set the WANDB_PROJECT environment variable"),
    "wandb_run_group": refuse("set the WANDB_RUN_GROUP environment variable"),
    "push_to_hub": noop(_PUBLISH, bool),
    "hub_model_id": noop(_PUBLISH),
    "hub_strategy": noop(_PUBLISH),
    "hub_private_repo": noop(_PUBLISH, bool),
    "hub_model_revision": noop(_PUBLISH),
    "push_to_hub_revision": noop(_PUBLISH, bool),
    "overwrite_hub_revision": noop(_PUBLISH, bool),
    "callbacks": noop("r1kit runs no TRL callbacks", list),
    # open-r1's parameters of its own rewards (GRPOScriptArguments)
    **{key: noop(_OPEN_R1_REWARD, type) for key, type in (
        ("cosine_min_value_wrong", float), ("cosine_max_value_wrong", float), ("cosine_min_value_correct", float),
        ("cosine_max_value_correct", float), ("cosine_max_len", int), ("repetition_n_grams", int),
        ("repetition_max_penalty", float), ("code_language", str), ("code_eval_test_batch_size", int),
        ("code_eval_scoring_mode", str), ("parallel_code_exec_per_proc", int), ("e2b_router_url", str),
        ("morph_router_url", str), ("code_provider", str), ("ioi_provider", str), ("max_completion_len", int),
        ("soft_punish_cache", int))},
}


@dataclass(frozen=True)
class TRLDefault:
    """A default of r1kit that differs from TRL 1.16's for the same option (or the same behaviour)."""

    trl: Any  # TRL's default value (tests compare it with TRL's own), or None where TRL has no such option
    said: str  # TRL's behaviour, as the notice and docs/trl.md say it
    why: str  # what r1kit does instead, and why
    applies: Callable[[Any], bool] = lambda c: True  # whether it matters for this config


TRL_DEFAULTS: dict[str, TRLDefault] = {
    "beta": TRLDefault(0.0, "0.0, no KL term and no reference model", "the R1 paper's KL term to the initial model"),
    "loss_type": TRLDefault("dapo", "dapo, a token-level mean over the batch", "the R1 paper's per-output token mean"),
    "max_completion_length": TRLDefault(512, "512", "r1kit's shorter default"),
    "max_prompt_length": TRLDefault(None, "no limit", "prompts longer than this many tokens are cut from the left"),
    "stop_strings": TRLDefault(None, "none, EOS only", "a completion ends at </answer>, the end of R1's format"),
    "lr_scheduler_type": TRLDefault("linear", "linear decay", "a constant rate, as the R1 paper"),
    "adam_beta2": TRLDefault(0.999, "0.999", "a shorter memory of squared gradients"),
    "logging_steps": TRLDefault(10, "10", "a metrics line every step"),
    "max_steps": TRLDefault(-1, "-1, num_train_epochs passes", "a fixed number of steps"),
    "num_train_epochs": TRLDefault(3.0, "3", "used only with max_steps -1", lambda c: c.max_steps == -1),
    "save_steps": TRLDefault(500, "500", "a checkpoint every 50 steps"),
    "output_dir": TRLDefault(None, "trainer_output", "runs go under runs/"),
    "dtype": TRLDefault("float32", "float32 weights, with bf16 autocast under bf16: true",
                        "bfloat16 weights on a GPU that has bf16, float32 on the CPU"),
    "reward_funcs": TRLDefault(None, "none: rewards must be given", "R1's format and accuracy rewards"),
    "lora_dropout": TRLDefault(0.05, "0.05", "no dropout on the adapter", lambda c: c.use_lora),
    "lora_target_modules": TRLDefault(None, "peft's per-model choice (q_proj, v_proj for Llama)",
                                      "every linear layer of the block", lambda c: c.use_lora),
    "importance_sampling_mode": TRLDefault("sequence_mask", "sequence_mask, sequences weighing above 3 masked",
                                           "token_truncate (TIS); r1kit's *_mask modes also mask weights below 1/C",
                                           lambda c: c.rollout_engine == "vllm" or c.rollout_dtype != "auto"),
    "use_bias_correction_kl": TRLDefault(True, "the KL term times the importance ratio",
                                         "the paper's k3 estimator alone", lambda c: c.beta > 0),
    "reward_timeout": TRLDefault(None, "no time limit", "each reward call may run reward_timeout seconds in a worker"),
    "reward_failure": TRLDefault(None, "a reward that raises stops the run",
                                 "a failing sample scores 0 and is logged; reward_failure_steps steps of a reward "
                                 "failing on every sample stop the run"),
}


def _clash(given: Any, mapped: Any) -> bool:
    """Whether a source gives one option two values that disagree (a value, or a _Not ruling one out)."""
    if given is _SAME:
        return False
    if isinstance(mapped, _Not):
        return not isinstance(given, _Not) and given == mapped.value
    return mapped == given.value if isinstance(given, _Not) else given != mapped


def translate_recipe(data: dict[str, Any], source: str, notes: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The r1kit options of one source (a YAML file, the command line) written with TRL / open-r1 keys.

    Keys of RECIPE_KEYS are translated; refused keys raise one ConfigError naming the source, every such key
    and what to use instead; keys without effect go to `notes` as (key, why). A TRL key and the r1kit option it
    maps to, both given with different values, are an error rather than a silent choice.
    """
    out = {k: v for k, v in data.items() if k not in RECIPE_KEYS}
    refused = []
    for key, value in data.items():
        if key not in RECIPE_KEYS:
            continue
        try:
            result = RECIPE_KEYS[key].translate(value)
        except _Refused as e:
            refused.append(f"'{key}: {value}' ({e})")
            continue
        if isinstance(result, str):
            if notes is not None:
                notes.append((key, result))
            continue
        for option, mapped in result.items():
            given = out.get(option, _SAME)
            if _clash(given, mapped):
                meaning = f"not {mapped.value!r}" if isinstance(mapped, _Not) else repr(mapped)
                said = f"not {given.value!r}" if isinstance(given, _Not) else repr(given)
                raise ConfigError(f"{source}: '{key}: {value}' means {option} {meaning}, but {option} is {said}; "
                                  "give one of them")
            if given is _SAME or not isinstance(mapped, _Not):
                out[option] = mapped
    if refused:
        raise ConfigError(f"{source}: not supported by r1kit: {'; '.join(refused)}")
    return out


def _defaults_notice(config: Any, given: set[str]) -> str:
    """One line: how a recipe's prompts are rendered, and r1kit's defaults that differ from TRL's where no
    source sets the option."""
    said = []
    for key, row in TRL_DEFAULTS.items():
        if key in given or not row.applies(config):
            continue
        ours = repr(getattr(config, key)) if hasattr(config, key) else row.why
        said.append(f"{key}={ours} (TRL: {row.said})")
    how = ("prompts are rendered with the chat template (template: chat; a system message only from "
           "system_prompt), as TRL and open-r1 render them" if config.template == "chat" else
           f"prompts use template {config.template}")
    differ = f"; r1kit's defaults that differ from TRL's: {', '.join(said)}" if said else ""
    return f"a TRL recipe: {how}{differ} (docs/trl.md)"


def read_recipe(sources: list[tuple[str, dict[str, Any]]]) -> Reading:
    """How GRPOConfig reads its sources: TRL / open-r1 keys translated in each; when any uses them, TRL's
    semantics where r1kit's defaults would render prompts differently (template chat, a system message only
    when system_prompt gives one), and the notices: keys without effect, defaults that differ from TRL's,
    and reward names that are both r1kit's and TRL's or open-r1's."""
    noop_notes: list[tuple[str, str]] = []
    recipe = [source for source, data in sources if any(key in RECIPE_KEYS for key in data)]
    translated, earlier = [], {}
    for source, data in sources:
        values = translate_recipe(data, source, noop_notes)
        for option, mapped in list(values.items()):  # use_vllm: false undoes an earlier source's use_vllm: true
            if isinstance(mapped, _Not):
                if earlier.get(option, _SAME) == mapped.value:
                    values[option] = mapped.fallback
                else:
                    del values[option]
        earlier.update(values)
        translated.append((source, values))

    def notices(config: Any, given: set[str]) -> list[str]:
        by_why = {why: [k for k, w in noop_notes if w == why] for _, why in noop_notes}
        said = "; ".join(f"{', '.join(dict.fromkeys(keys))} ({why})" for why, keys in by_why.items())
        lines = [f"{', '.join(recipe)}: recipe keys without effect in r1kit: {said}"] if noop_notes else []
        if recipe:
            lines.append(f"{', '.join(recipe)}: {_defaults_notice(config, given)}")
        collision = reward_name_notice(config.reward_funcs) if "reward_funcs" in given else None
        return lines + ([collision] if collision else [])

    implied = {"template": "chat", "system_prompt": ""} if recipe else {}
    return Reading(translated, implied, notices)
