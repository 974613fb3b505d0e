"""TODO docstring."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1kit.core.errors import ConfigError
from r1kit.core.options import DTYPE_HELP, DTYPES, SCHEDULERS, load_config, need, need_choice, opt
from r1kit.core.tracking import TRACKERS, check_trackers
from r1kit.trainers.grpo.recipes import translate_recipe


@dataclass
class GRPOConfig:
    # model
    model: str = opt("embedded", "local HF model folder, a hub id in the local cache, or 'embedded' (SmolLM2-135M-Instruct)")
    trust_remote_code: bool = opt(False, "allow model code from the model folder to run")
    dtype: str = opt("auto", DTYPE_HELP)
    use_lora: bool = opt(False, "train a LoRA adapter; the reference model is then the base with the adapter off")
    lora_r: int = opt(16, "LoRA rank")
    lora_alpha: int = opt(32, "LoRA alpha")
    lora_dropout: float = opt(0.0, "LoRA dropout")
    lora_target_modules: list[str] = opt(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "modules that get LoRA adapters")
    # data and prompts
    dataset: str = opt("arithmetic", "'arithmetic' (synthetic), 'gsm8k' (from data_dir), a .jsonl/.json/.parquet/.csv/.arrow file, a folder of such files, a save_to_disk folder, or a hub dataset id in the local HF cache")
    data_dir: str | None = opt(None, "folder with benchmark data (default: $R1KIT_DATA_DIR or ../shared/data)")
    dataset_config: str | None = opt(None, "configuration (subset) of a hub or folder dataset")
    dataset_split: str = opt("train", "split: gsm8k's train or test, or a split of a folder/save_to_disk/hub dataset (a single file is its own split)")
    question_field: str = opt("question", "JSONL field holding the question")
    answer_field: str = opt("answer", "JSONL field holding the gold answer")
    arithmetic_terms: int = opt(2, "arithmetic task: numbers per question")
    arithmetic_max_value: int = opt(99, "arithmetic task: largest number (difficulty)")
    arithmetic_ops: str = opt("+", "arithmetic task: operators to draw from, a subset of '+-*'")
    arithmetic_examples: int = opt(10000, "arithmetic task: number of distinct questions")
    template: str = opt("r1zero", "'r1zero' (the paper's Table 1 template), 'chat' (the model's chat template) or 'plain'")
    system_prompt: str | None = opt(None, "template=chat: the system message (default: r1kit's R1 instruction); a conversational dataset's own system turn wins")
    prefill: str = opt("", "text the response is forced to start with, e.g. '<think>'")
    max_prompt_length: int = opt(512, "prompts longer than this many tokens are cut from the left")
    skip_bad_data: bool = opt(False, "skip malformed dataset lines (counted, reported, listed in skipped_data.txt) instead of stopping with an error")
    # rollout
    num_generations: int = opt(8, "G: completions sampled per prompt (a group)")
    max_completion_length: int = opt(256, "most new tokens per completion")
    temperature: float = opt(1.0, "sampling temperature for rollouts")
    top_p: float = opt(1.0, "nucleus sampling for rollouts")
    stop_strings: list[str] = opt(["</answer>"], "generation stops after any of these strings (and at EOS)")
    ignore_eos: bool = opt(False, "generate exactly max_completion_length tokens, ignoring EOS and stop strings (benchmarks)")
    rollout_engine: str = opt("auto", "'fused' (r1kit's fused decoder for Llama-family models), 'hf' (the transformers forward, any model), 'vllm' (vLLM, colocated or as a server, see vllm_mode; CUDA: pip install 'r1kit[vllm]', CPU: setup.sh --vllm), or 'auto' (fused where supported, else hf); copies of the weights are refreshed after every update")
    rollout_dtype: str = opt("auto", "weights dtype of the fused/hf rollout: auto (the policy's dtype: exactly on-policy), bfloat16 (on CPUs with AVX512-BF16 about 1.7x faster decoding; samples from a bf16 copy) or float32")
    rollout_kernels: str = opt("auto", "fused decoder's matmuls: 'onednn' (weights prepacked once per update, ~2.5x faster fp32 decode matmuls on CPUs; differs from plain by reduction order, ~4e-6), 'torch' (plain F.linear), 'auto' (onednn on the CPU where torch has it)")
    vllm_dtype: str = opt("bfloat16", "weights dtype inside vLLM (rollout_engine=vllm)")
    vllm_gpu_memory_utilization: float = opt(0.3, "share of the GPU's memory vLLM may take, colocated with training (rollout_engine=vllm; on the CPU: share of the RAM for its KV cache)")
    vllm_mode: str = opt("colocate", "rollout_engine=vllm: 'colocate' (vLLM inside each training process) or 'server' (a `r1kit vllm-serve` process at vllm_server_host:vllm_server_port, weights pushed through torch.distributed)")
    vllm_server_host: str = opt("127.0.0.1", "vllm_mode=server: host of the `r1kit vllm-serve` process")
    vllm_server_port: int = opt(8000, "vllm_mode=server: its HTTP port")
    vllm_group_port: int = opt(51216, "vllm_mode=server: port on the server host for the torch.distributed group (gloo on CPU, NCCL on GPUs) the weights are pushed through")
    vllm_server_timeout: float = opt(240.0, "vllm_mode=server: seconds to wait for the server to answer (at start, and for each request)")
    vllm_enable_sleep_mode: bool = opt(False, "colocated vLLM on a GPU: release its weights and KV cache during the update (vLLM's CPU backend has none)")
    vllm_enforce_eager: bool = opt(False, "vLLM without torch.compile and CUDA graphs: starts in seconds instead of minutes, decodes slower")
    vllm_kv_cache_memory_bytes: int = opt(0, "colocated vLLM: bytes for its KV cache (0: vllm_gpu_memory_utilization decides)")
    # rewards
    reward_funcs: list[str] = opt(["format", "accuracy"], "reward functions: registered names (r1kit.rewards.REWARDS), dotted paths my_pkg.rewards.fn, or path/to/file.py:fn; r1kit's fn(completions, answers) or TRL's fn(completions, **kwargs)")
    reward_weights: list[float] | None = opt(None, "one weight per reward function (default 1.0 each)")
    reward_timeout: float = opt(10.0, "seconds one reward call may run, in a forked worker process (0: no limit, rewards run in this process)")
    language: str = opt("en", "target language of the chain of thought for the language_consistency reward (en, zh, ...)")
    special_token: str = opt("|special_token|", "the readable format's separator: TOKEN reasoning TOKEN summary (readable_* rewards)")
    # all-scenario RL (R1 stage 4): general prompts scored by reward models, mixed into the batches
    general_dataset: str | None = opt(None, "a .jsonl of general prompts mixed with the reasoning prompts; scored by reward models")
    general_prompt_field: str = opt("prompt", "JSONL field holding a general prompt")
    general_fraction: float = opt(0.5, "share of each step's prompts drawn from general_dataset (at least one per process)")
    reward_model: str | None = opt(None, "sequence-classification model scoring helpfulness of the summary only (general prompts)")
    harmlessness_model: str | None = opt(None, "sequence-classification model scoring harmlessness of the whole response (default: reward_model)")
    helpfulness_weight: float = opt(1.0, "weight of the helpfulness score in a general prompt's reward")
    harmlessness_weight: float = opt(1.0, "weight of the harmlessness score in a general prompt's reward")
    reward_failure: str = opt("zero", "a reward that raises or times out on a sample: 'zero' (that sample scores 0, counted and logged) or 'abort'")
    # GRPO
    beta: float = opt(0.001, "KL coefficient to the reference model (paper: 0.001); 0 skips the reference")
    epsilon: float = opt(0.2, "clip range: ratio is clipped to [1-epsilon, 1+epsilon_high]")
    epsilon_high: float | None = opt(None, "upper clip range (DAPO clip-higher); default: epsilon")
    loss_type: str = opt("grpo", "'grpo' (per-output token mean, the paper), 'dapo' (token-level), 'dr_grpo', 'bnpo', 'cispo' (epsilon_high is its cap, e.g. 5.0), 'sapo', or a loss registered with r1kit.grpo.register_loss (docs/algorithms.md)")
    scale_rewards: bool | str = opt(True, "divide advantages by the std of each group ('group' or true: the paper), of the whole batch ('batch'), or not at all ('none' or false: Dr. GRPO)")
    num_iterations: int = opt(1, "mu: policy updates per batch of rollouts, pi_old fixed at sampling")
    importance_sampling_cap: float = opt(0.0, "0: off; C > 0: weight each token's loss by min(pi_old / pi_rollout, C), truncated importance sampling for a rollout engine whose weights differ from the policy's (rollout_dtype=bfloat16, vllm)")
    # GRPO family options (docs/algorithms.md; TRL's names where TRL has the option)
    advantage_estimator: str = opt("grpo", "'grpo' (group mean baseline), 'rloo' (leave-one-out baseline), 'reinforce_plus_plus' (batch baseline, batch whitening), or one registered with r1kit.grpo.register_advantage_estimator")
    importance_sampling_level: str = opt("token", "'token': one ratio per token (the default); 'sequence': GSPO, one ratio per output, exp of the mean token log-ratio (GSPO uses epsilon 3e-4, epsilon_high 4e-4)")
    sapo_temperature_pos: float = opt(1.0, "loss_type=sapo: gate temperature for tokens with positive advantage")
    sapo_temperature_neg: float = opt(1.05, "loss_type=sapo: gate temperature for tokens with non-positive advantage")
    top_entropy_quantile: float = opt(1.0, "train the policy term only on this top fraction of tokens by entropy (the 80/20 paper: 0.2); 1.0 keeps every token")
    entropy_coef: float = opt(0.0, "entropy bonus: subtract entropy_coef x the token's entropy from the loss (0: off)")
    mask_truncated_completions: bool = opt(False, "no loss on completions cut at max_completion_length (DAPO)")
    importance_sampling_mode: str = opt("token_truncate", "with importance_sampling_cap C > 0: token_truncate (TIS, min(w, C) per token), token_mask (IcePop: w outside [1/C, C] set to 0), sequence_truncate, sequence_mask (one w per completion)")
    overlong_buffer_length: int = opt(0, "soft_overlong reward (DAPO): completions longer than max_completion_length minus this many tokens are penalised linearly, down to -overlong_penalty_factor at the limit (0: off)")
    overlong_penalty_factor: float = opt(1.0, "largest soft_overlong penalty, added to the reward")
    dynamic_sampling: bool = opt(False, "DAPO dynamic sampling: drop groups whose rewards are all equal and sample more prompts until the step's groups are all informative")
    max_resample_rounds: int = opt(3, "dynamic_sampling: extra rounds of sampling per step at most; the step then trains on the informative groups it has")
    # optimisation
    learning_rate: float = opt(1e-6, "AdamW learning rate")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    adam_beta1: float = opt(0.9, "AdamW beta1")
    adam_beta2: float = opt(0.99, "AdamW beta2")
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0 disables)")
    max_consecutive_nonfinite: int = opt(3, "stop the run after this many NaN/inf updates in a row (each is skipped)")
    lr_scheduler_type: str = opt("constant", f"transformers scheduler name: {', '.join(SCHEDULERS)}")
    warmup_steps: int = opt(0, "optimizer steps of linear warm-up")
    warmup_ratio: float = opt(0.0, "warm-up as a share of the training steps (TRL); used when warmup_steps is 0")
    per_device_train_batch_size: int = opt(8, "completions per micro-batch per process")
    gradient_accumulation_steps: int = opt(1, "micro-batches per process per step")
    max_steps: int = opt(100, "training steps (one batch of rollouts each); -1: num_train_epochs passes over the dataset")
    num_train_epochs: float = opt(0.0, "with max_steps -1: passes over the dataset (TRL); steps = ceil(epochs x prompts / prompts per step)")
    seed: int = opt(42, "seed for data order, sampling and initialisation")
    # evaluation during training (the paper's Figure 2 curve)
    eval_steps: int = opt(0, "evaluate on a held-out set at step 0, every N steps and at the end (0: never)")
    eval_benchmark: str = opt("gsm8k", "gsm8k, math500, aime24, aime25, amc23, a .jsonl, or 'arithmetic' (held-out synthetic)")
    eval_limit: int = opt(50, "problems in the held-out set (the first N)")
    eval_num_samples: int = opt(4, "k samples per problem for pass@1 and cons@k")
    eval_max_new_tokens: int | None = opt(None, "default: max_completion_length")
    eval_temperature: float = opt(0.6, "sampling temperature for evaluation (paper: 0.6)")
    eval_top_p: float = opt(0.95, "top-p for evaluation (paper: 0.95)")
    # output
    output_dir: str = opt("runs/grpo", "folder for metrics.jsonl, samples.jsonl and checkpoints")
    save_steps: int = opt(50, "save a checkpoint every N steps (and always at the end); 0: only at the end")
    save_total_limit: int | None = opt(None, "keep only the last N checkpoints")
    logging_steps: int = opt(1, "write a metrics line every N steps")
    log_completions_steps: int = opt(10, "print a sample completion every N steps (0: never)")
    resume: bool = opt(False, "resume from the last checkpoint in output_dir")
    overwrite_output_dir: bool = opt(False, "start afresh even if output_dir already holds a run")
    torch_threads: int | None = opt(None, "CPU threads per process (default: cores / processes)")
    # alerts (r1kit.report.alerts): printed once each as one line and shown at the top of the report; 0 turns one off
    alert_entropy_min: float = opt(0.05, "alert when the mean entropy (nats per token) stays below this for alert_patience steps")
    alert_zero_std_max: float = opt(0.95, "alert when the share of groups with zero reward spread stays at or above this for alert_patience steps")
    alert_format_rate: float = opt(0.5, "alert when format_rate has risen to at least this while accuracy stayed 0 for alert_patience steps")
    alert_template_copy_max: float = opt(0.2, "alert when template_copy_rate (completions copying the template's example) exceeds this")
    alert_kl_max: float = opt(1.0, "alert when the KL to the reference (per token) exceeds this")
    alert_clip_max: float = opt(0.2, "alert when the share of clipped tokens exceeds this")
    alert_timeouts_max: int = opt(10, "alert when one reward has timed out on this many samples in the run")
    alert_patience: int = opt(3, "logged steps in a row a sustained alert condition must hold")
    alert_stop: bool = opt(False, "stop the run (after saving a checkpoint) when an alert fires; default: print it and go on")
    # report and trackers
    write_report: bool = opt(True, "write OUTPUT_DIR/report/report.html and its PNG plots when training ends")
    report_steps: int = opt(0, "also rewrite the report every N steps (0: only at the end)")
    report_markers: list[str] | None = opt(None, "reflection markers for the aha tracker (default: r1kit.aha.DEFAULT_MARKERS)")
    report_to: list[str] = opt([], f"also log metrics to any of {', '.join(TRACKERS)} (each needs its package); all, none")

    def __post_init__(self) -> None:
        if self.epsilon_high is None:
            self.epsilon_high = self.epsilon

    @property
    def completions_per_step(self) -> int:
        """Completions each process generates and trains on per step."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps


FIELDS = {f.name: f for f in dataclasses.fields(GRPOConfig)}


def make_config(yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> GRPOConfig:
    """Config file first, then overrides (from the command line) on top; unknown keys are an error.

    The file may be a TRL / open-r1 GRPO recipe (see RECIPE_KEYS); keys accepted without effect are
    listed in one line on stderr."""
    notes: list[str] = []
    config = load_config(GRPOConfig, validate, yaml_path, overrides,
                         translate=lambda data, source: translate_recipe(data, source, notes))
    if notes:
        import sys

        print(f"r1kit: {yaml_path}: recipe keys without effect in r1kit: {'; '.join(notes)}", file=sys.stderr)
    return config


def validate(c: GRPOConfig) -> None:
    """Reject settings that cannot work, naming the option."""
    need(c.num_generations >= 2, f"num_generations={c.num_generations}: GRPO needs at least 2 completions per group")
    need(c.per_device_train_batch_size >= 1, "per_device_train_batch_size must be >= 1")
    need(c.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1")
    need(c.completions_per_step % c.num_generations == 0,
         f"per_device_train_batch_size x gradient_accumulation_steps = {c.completions_per_step} completions "
         f"does not divide into groups of num_generations={c.num_generations}")
    need(c.max_completion_length >= 1, "max_completion_length must be >= 1")
    need(c.max_prompt_length >= 1, "max_prompt_length must be >= 1")
    need(c.temperature > 0, f"temperature={c.temperature}: rollouts must sample (temperature > 0)")
    need(0 < c.top_p <= 1, f"top_p={c.top_p}: must be in (0, 1]")
    need(c.beta >= 0, f"beta={c.beta}: must be >= 0")
    need(0 < c.epsilon < 1, f"epsilon={c.epsilon}: must be in (0, 1)")
    need(c.epsilon_high > 0, f"epsilon_high={c.epsilon_high}: must be > 0")
    from r1kit.algorithms.advantages import ADVANTAGE_ESTIMATORS, scale_mode
    from r1kit.algorithms.corrections import IMPORTANCE_SAMPLING_MODES
    from r1kit.algorithms.losses import IMPORTANCE_SAMPLING_LEVELS, LOSS_TYPES

    need_choice("loss_type", c.loss_type, LOSS_TYPES)
    need(c.loss_type != "cispo" or c.epsilon_high > 1,
         f"epsilon_high={c.epsilon_high}: loss_type=cispo reads epsilon_high as the cap on the importance weight; "
         "set it above 1 (TRL suggests 5.0)")
    try:
        scale_mode(c.scale_rewards)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    need(c.advantage_estimator in ADVANTAGE_ESTIMATORS,
         f"advantage_estimator={c.advantage_estimator!r}: choose one of {', '.join(ADVANTAGE_ESTIMATORS)}")
    need(c.importance_sampling_level in IMPORTANCE_SAMPLING_LEVELS,
         f"importance_sampling_level={c.importance_sampling_level!r}: choose token or sequence")
    need(c.sapo_temperature_pos > 0, f"sapo_temperature_pos={c.sapo_temperature_pos}: must be > 0")
    need(c.sapo_temperature_neg > 0, f"sapo_temperature_neg={c.sapo_temperature_neg}: must be > 0")
    need(0 < c.top_entropy_quantile <= 1, f"top_entropy_quantile={c.top_entropy_quantile}: must be in (0, 1]")
    need(c.entropy_coef >= 0 and math.isfinite(c.entropy_coef), f"entropy_coef={c.entropy_coef}: must be a finite number >= 0")
    need(c.importance_sampling_mode in IMPORTANCE_SAMPLING_MODES,
         f"importance_sampling_mode={c.importance_sampling_mode!r}: choose one of {', '.join(IMPORTANCE_SAMPLING_MODES)}")
    need(c.importance_sampling_cap == 0 or not c.importance_sampling_mode.endswith("mask") or c.importance_sampling_cap > 1,
         f"importance_sampling_cap={c.importance_sampling_cap}: importance_sampling_mode={c.importance_sampling_mode} "
         "keeps weights in [1/C, C], so C must be > 1")
    need(0 <= c.overlong_buffer_length <= c.max_completion_length,
         f"overlong_buffer_length={c.overlong_buffer_length}: must be in [0, max_completion_length={c.max_completion_length}]")
    need(c.overlong_penalty_factor >= 0, f"overlong_penalty_factor={c.overlong_penalty_factor}: must be >= 0")
    need(c.max_resample_rounds >= 0, f"max_resample_rounds={c.max_resample_rounds}: must be >= 0")
    need(c.num_iterations >= 1, "num_iterations must be >= 1")
    need(c.learning_rate >= 0 and math.isfinite(c.learning_rate), "learning_rate must be a finite number >= 0")
    need(c.max_steps >= 1 or (c.max_steps == -1 and c.num_train_epochs > 0),
         "max_steps must be >= 1 (or -1 with num_train_epochs > 0)" if c.max_steps != -1 else
         "max_steps=-1 needs num_train_epochs > 0 (passes over the dataset)")
    need(c.num_train_epochs >= 0 and 0 <= c.warmup_ratio < 1,
         "num_train_epochs must be >= 0 and warmup_ratio in [0, 1)")
    need(c.max_grad_norm >= 0, "max_grad_norm must be >= 0")
    need_choice("dtype", c.dtype, DTYPES)
    need_choice("lr_scheduler_type", c.lr_scheduler_type, SCHEDULERS)
    need(c.rollout_engine in ("auto", "fused", "hf", "vllm"),
         f"rollout_engine={c.rollout_engine!r}: choose auto, fused, hf or vllm")
    need_choice("rollout_dtype", c.rollout_dtype, DTYPES)
    from r1kit.rollout.decoder import KERNELS

    need_choice("rollout_kernels", c.rollout_kernels, KERNELS)
    need_choice("vllm_dtype", c.vllm_dtype, DTYPES)
    need(0 < c.vllm_gpu_memory_utilization <= 1,
         f"vllm_gpu_memory_utilization={c.vllm_gpu_memory_utilization}: must be in (0, 1]")
    need(c.vllm_mode in ("colocate", "server"), f"vllm_mode={c.vllm_mode!r}: choose colocate or server")
    need(0 < c.vllm_server_port < 65536 and 0 < c.vllm_group_port < 65536 and c.vllm_group_port != c.vllm_server_port,
         f"vllm_server_port={c.vllm_server_port}, vllm_group_port={c.vllm_group_port}: two different ports in 1..65535")
    need(c.vllm_server_timeout > 0, f"vllm_server_timeout={c.vllm_server_timeout}: must be > 0 seconds")
    need(c.vllm_kv_cache_memory_bytes >= 0, f"vllm_kv_cache_memory_bytes={c.vllm_kv_cache_memory_bytes}: must be >= 0")
    need(c.importance_sampling_cap >= 0 and math.isfinite(c.importance_sampling_cap),
         f"importance_sampling_cap={c.importance_sampling_cap}: must be a finite number >= 0 (0: off)")
    from r1kit.data.templates import TEMPLATES

    need_choice("template", c.template, TEMPLATES)
    need(bool(c.reward_funcs), "reward_funcs: give at least one reward function")
    need(c.reward_weights is None or len(c.reward_weights) == len(c.reward_funcs),
         f"reward_weights has {len(c.reward_weights or [])} entries for {len(c.reward_funcs)} reward_funcs")
    need(c.save_steps >= 0 and c.logging_steps >= 1, "save_steps must be >= 0 and logging_steps >= 1")
    need(c.eval_steps >= 0 and c.eval_limit >= 1 and c.eval_num_samples >= 1,
         "eval_steps must be >= 0, eval_limit and eval_num_samples >= 1")
    need(c.save_total_limit is None or c.save_total_limit >= 1, "save_total_limit must be >= 1")
    need(c.reward_timeout >= 0 and math.isfinite(c.reward_timeout),
         f"reward_timeout={c.reward_timeout}: must be a number of seconds >= 0 (0: no limit)")
    need(c.max_consecutive_nonfinite >= 1, "max_consecutive_nonfinite must be >= 1")
    need(c.report_steps >= 0, f"report_steps={c.report_steps}: must be >= 0 (0: report only at the end)")
    need(not c.general_dataset or bool(c.reward_model),
         "general_dataset needs reward_model: general prompts have no gold answer and are scored by a reward model")
    need(0 < c.general_fraction < 1, f"general_fraction={c.general_fraction}: must be in (0, 1)")
    need(not c.general_dataset or c.completions_per_step // c.num_generations >= 2,
         "general_dataset: each process needs at least 2 prompts per step (one reasoning, one general); "
         "raise per_device_train_batch_size x gradient_accumulation_steps")
    need(bool(c.special_token.strip()), "special_token must not be blank")
    for name in ("alert_entropy_min", "alert_zero_std_max", "alert_format_rate", "alert_template_copy_max",
                 "alert_kl_max", "alert_clip_max"):
        value = getattr(c, name)
        need(value >= 0 and math.isfinite(value), f"{name}={value}: must be a finite number >= 0 (0: off)")
    need(c.alert_timeouts_max >= 0, f"alert_timeouts_max={c.alert_timeouts_max}: must be >= 0 (0: off)")
    need(c.alert_patience >= 1, f"alert_patience={c.alert_patience}: must be >= 1")
    from r1kit.rewards.readable import TARGET_LANGUAGES

    need(c.language in TARGET_LANGUAGES, f"language={c.language!r}: choose one of {', '.join(TARGET_LANGUAGES)}")
    check_trackers(c.report_to)  # a TrackerError (a ConfigError) names a missing package before any model loads
    from r1kit.rewards.registry import REWARDS, load_reward_spec
    from r1kit.rewards.scoring import FAILURE_POLICIES

    need(c.reward_failure in FAILURE_POLICIES,
         f"reward_failure={c.reward_failure!r}: choose {' or '.join(FAILURE_POLICIES)}")
    unknown = [r for r in c.reward_funcs if r not in REWARDS and "." not in r]
    need(not unknown, f"reward_funcs: unknown reward {', '.join(unknown)}; known: {', '.join(sorted(REWARDS))} "
                      f"(or a dotted path my_pkg.module.fn, or path/to/file.py:fn)")
    for spec in c.reward_funcs:  # dotted paths and files: imported now, so a bad one fails before any model loads
        try:
            load_reward_spec(spec)
        except ValueError as e:
            raise ConfigError(f"reward_funcs: {e}") from None


def training_steps(c: GRPOConfig, num_examples: int, num_processes: int = 1) -> tuple[int, int]:
    """(max_steps, warmup_steps) of a run: max_steps as given, or with max_steps -1 the steps of
    num_train_epochs passes over `num_examples` prompts (each step takes completions_per_step /
    num_generations prompts per process); warmup_steps as given, else warmup_ratio of the steps."""
    steps = c.max_steps
    if steps == -1:
        prompts_per_step = c.completions_per_step // c.num_generations * num_processes
        steps = max(1, math.ceil(c.num_train_epochs * num_examples / prompts_per_step))
    warmup = c.warmup_steps or math.ceil(c.warmup_ratio * steps)
    return steps, warmup


