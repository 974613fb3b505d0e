"""Setting up a GRPO run: its data (checked before any model loads), the policy, the reference model (a
frozen copy, or with LoRA the base with the adapter off; none with beta 0), the reward models of
all-scenario RL, the rollout engine, and the loop's optimizer around the policy; all in `GRPOSetup`, what
every step reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import torch

from r1kit.algorithms.corrections import AUTO_IMPORTANCE_SAMPLING_CAP
from r1kit.algorithms.options import AlgorithmOptions
from r1kit.core.errors import ConfigError
from r1kit.core.files import iter_jsonl
from r1kit.data.options import DataOptions
from r1kit.data.problems import Problem
from r1kit.data.sources import general_examples, read_examples
from r1kit.evaluation.benchmarks import held_out_problems
from r1kit.models.loading import load_model, load_policy, load_tokenizer, resolve_dtype
from r1kit.models.options import LoraOptions, ModelOptions
from r1kit.report.alerts import AlertMonitor
from r1kit.report.html import write_report_safely
from r1kit.report.options import AlertOptions
from r1kit.rewards.registry import bind_reward_options
from r1kit.rollout.background import ProcessEngine, ThreadEngine
from r1kit.rollout.decoder import FusedDecoder, unsupported_reason
from r1kit.rollout.engines import LocalEngine, RolloutEngine, make_engine, samples_off_policy
from r1kit.rollout.options import EngineOptions
from r1kit.trainers.grpo.config import GRPOConfig, training_steps
from r1kit.trainers.loop import Run


def sampling_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the sampling generator for one step on one process."""
    return (seed * 1_000_003 + step * 1_009 + rank) % (2**63)


def load_run_examples(c: GRPOConfig, skipped: list[str] | None = None) -> list[Problem]:
    """The training examples; with a `skipped` list, bad lines are recorded there instead of raising."""
    return DataOptions.from_config(c).problems(c.seed, skipped)


def load_eval_problems(c: GRPOConfig) -> list[Problem]:
    """The held-out set for evaluation during training."""
    return held_out_problems(c.eval_benchmark, c.eval_limit, c.seed, c.data_dir, question_field=c.question_field,
                             answer_field=c.answer_field, arithmetic_terms=c.arithmetic_terms,
                             arithmetic_max_value=c.arithmetic_max_value, arithmetic_ops=c.arithmetic_ops)


def bound_rewards(c: GRPOConfig, reward_funcs: list | None) -> list:
    """The run's rewards: options such as the target language bound to the rewards that take them (once,
    so the reward worker knows each function by identity); callables as given."""
    return [bind_reward_options([r], language=c.language, special_token=c.special_token)[0]
            if isinstance(r, str) else r for r in (reward_funcs or list(c.reward_funcs))]


@dataclass
class GRPOSetup:
    """Everything a GRPO step reads, built once per run."""

    c: GRPOConfig
    algo: AlgorithmOptions  # what the loss, the advantages and the corrections read
    run: Run
    model: torch.nn.Module  # the policy as accelerate wraps it (DDP under a multi-process launch)
    policy: torch.nn.Module  # the same module unwrapped
    tokenizer: object
    ref_model: torch.nn.Module | None  # None with LoRA (the adapter is switched off) or beta == 0
    engine: RolloutEngine
    rewards: list  # reward names (options bound) or callables
    judges: dict  # reward models by role: all-scenario RL's helpfulness and harmlessness; a process reward model
    reasoning: list[Problem]
    general: list[Problem]
    eval_problems: list[Problem]
    dtype: torch.dtype
    skipped_lines: int
    alerts: AlertMonitor  # fed every step's metrics, in order (replayed from metrics.jsonl on resume)
    examples: tuple[tuple[str, str], ...] = ()  # worked examples shown before each question (prompt_examples)
    rollouts: object | None = None  # async_rollout: trainers.grpo.rollouts.OneStepOff, set by the trainer
    failing: dict = field(default_factory=dict)  # reward -> (steps in a row it failed on every sample, first error)

    @property
    def G(self) -> int:
        return self.c.num_generations

    @property
    def prompts_local(self) -> int:
        return self.c.completions_per_step // self.c.num_generations

    @property
    def n_global(self) -> int:
        """Completions per step over all processes: the loss's sequence normaliser."""
        return self.prompts_local * self.run.world * self.c.num_generations


def load_training_data(c: GRPOConfig, examples: list[Problem] | None, run: Run) -> tuple[list[Problem], list[Problem], int]:
    """(reasoning examples, general examples, bad lines skipped), checked before any model loads."""
    skipped: list[str] = []
    keep = skipped if c.skip_bad_data else None
    examples = examples if examples is not None else load_run_examples(c, keep)
    if c.general_dataset:
        examples = [*examples, *general_examples(c.general_dataset, c.general_prompt_field, keep)]
    if skipped and run.is_main:
        out = run.out_dir
        shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        print(f"r1kit: skip_bad_data: skipped {len(skipped)} bad dataset lines (listed in "
              f"{out / 'skipped_data.txt'}): {shown}")
    reasoning = [e for e in examples if e.kind != "general"]
    general = [e for e in examples if e.kind == "general"]
    if general and not reasoning:
        raise ConfigError("all-scenario RL: the batches mix reasoning and general prompts, but there are no reasoning prompts")
    if general and not c.reward_model:
        raise ConfigError("general prompts (kind 'general') need reward_model: they have no gold answer to check")
    return reasoning, general, skipped


def setup(c: GRPOConfig, run: Run, examples: list[Problem] | None, reward_funcs: list | None,
          engine: RolloutEngine | None) -> GRPOSetup:
    """Data, models, reward models, the rollout engine, and the loop's optimizer around the policy."""
    reasoning, general, skipped = load_training_data(c, examples, run)
    eval_problems = load_eval_problems(c) if c.eval_steps else []  # checked before any model loads
    device = run.acc.device
    torch.manual_seed(c.seed)
    dtype = resolve_dtype(c.dtype)
    tokenizer = load_tokenizer(c.model, c.trust_remote_code)
    if c.chat_template:
        tokenizer.chat_template = c.chat_template
    if c.template == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"template=chat: model {c.model} has no chat template (a TRL recipe renders its prompts with "
                          "one); give chat_template, or template: r1zero or plain")
    model = load_policy(ModelOptions.from_config(c), LoraOptions.from_config(c), run.checkpoint, dtype)
    ref_model = None
    if not c.use_lora and c.beta > 0:
        ref_model = load_model(c.model, dtype, trust_remote_code=c.trust_remote_code).to(device)
        ref_model.eval().requires_grad_(False)
    model.config.use_cache = False
    judges = load_reward_models(c, device)
    if c.async_rollout:
        engine = background_engine(c, run, model, tokenizer, dtype, engine)
    engine = engine if engine is not None else make_engine(EngineOptions.from_config(c), model, dtype, device, model=c.model,
                                                               max_model_len=c.max_prompt_length + c.max_completion_length,
                                                               seed=c.seed, sharded=run.sharded)
    if run.sharded and c.eval_steps and not isinstance(engine, LocalEngine) and unsupported_reason(model):
        raise ConfigError(f"eval_steps under FSDP2 with rollout_engine={c.rollout_engine}: the evaluation would "
                          f"decode with the sharded policy ({unsupported_reason(model)}); use rollout_engine=hf")
    # max_steps -1: num_train_epochs passes over the prompts; warmup_ratio when warmup_steps is 0 (TRL's names)
    max_steps, warmup_steps = training_steps(c, len(reasoning), run.world)
    wrapped, policy = run.start(model, tokenizer, extra_state=run_identity(c, reasoning + general, reward_funcs),
                                on_close=lambda: _final_report(c, run), max_steps=max_steps, warmup_steps=warmup_steps)
    if skipped and run.is_main:
        (run.out_dir / "skipped_data.txt").write_text("".join(line + "\n" for line in skipped), encoding="utf-8")
    algo = AlgorithmOptions.from_config(c, importance_sampling_cap=rollout_correction(c, run, engine, dtype))
    alerts = AlertMonitor(AlertOptions.from_config(c))
    for past in iter_jsonl(run.out_dir / "metrics.jsonl") if run.start_step else ():
        alerts.update(past)  # those that fired before the resume stay fired, silently
    examples = read_examples(c.prompt_examples) if c.prompt_examples else ()
    return GRPOSetup(c, algo, run, wrapped, policy, tokenizer, ref_model, engine,
                     bound_rewards(c, reward_funcs), judges, reasoning, general, eval_problems, dtype, len(skipped),
                     alerts, examples)


def run_identity(c: GRPOConfig, problems: list[Problem], reward_funcs: list | None) -> dict:
    """What a resumed run must share with its checkpoint beyond the config: the problems as read (a dataset
    file edited in place changes them) and the reward functions by name (callables given to `train` too)."""
    h = hashlib.sha256()
    for p in problems:
        h.update(json.dumps([p.question, p.answer, p.kind, p.messages, p.columns], default=str, sort_keys=True).encode())
    names = [r if isinstance(r, str) else getattr(r, "__name__", type(r).__name__) for r in (reward_funcs or c.reward_funcs)]
    return {"data_fingerprint": h.hexdigest()[:16], "reward_functions": names}


def rollout_correction(c: GRPOConfig, run: Run, engine: RolloutEngine, dtype: torch.dtype) -> float:
    """The run's importance_sampling_cap: as given, else AUTO_IMPORTANCE_SAMPLING_CAP when the engine samples
    off-policy (vLLM, weights in another dtype, async_rollout's one step behind) and 0 otherwise, as TRL
    corrects whenever vLLM samples. Says once, in one line, what the engine samples with and whether that is
    the policy's distribution."""
    off_policy = c.async_rollout or samples_off_policy(engine, dtype)
    cap = c.importance_sampling_cap
    if cap is None:
        cap = AUTO_IMPORTANCE_SAMPLING_CAP if off_policy else 0.0
    if isinstance(engine, LocalEngine):
        name = "fused" if isinstance(engine.sampler, FusedDecoder) else "hf"
    else:
        name = c.rollout_engine if c.rollout_engine == "vllm" else type(engine).__name__
    held = str(getattr(engine, "dtype", None) or dtype).removeprefix("torch.")
    lag = " one step behind" if c.async_rollout else ""
    state = ("on-policy" if not off_policy else
             f"off-policy, corrected by importance_sampling_cap={cap:g} ({c.importance_sampling_mode}; 0 turns it "
             "off)" if cap > 0 else "off-policy and uncorrected (importance_sampling_cap: 0)")
    run.write(f"r1kit: rollout engine {name} samples with {held} weights{lag}, the policy trains in "
              f"{str(dtype).removeprefix('torch.')}: {state}")
    return cap


def background_engine(c: GRPOConfig, run: Run, model, tokenizer, dtype, engine: RolloutEngine | None):
    """async_rollout: an engine that generates while the trainer trains. A user's engine, or the vLLM
    server's client, runs in a thread (its work is elsewhere); otherwise a local generation worker process."""
    o = EngineOptions.from_config(c)
    if engine is None and c.rollout_engine == "vllm":
        engine = make_engine(o, model, dtype, run.acc.device, model=c.model, seed=c.seed,
                             max_model_len=c.max_prompt_length + c.max_completion_length)
    if isinstance(engine, LocalEngine):
        raise ConfigError("async_rollout with a LocalEngine given to train(engine=...): it would sample in this "
                          "process, from weights being trained; leave engine unset and r1kit starts a generation "
                          "worker process")
    if engine is not None:
        return ThreadEngine(engine)
    if run.sharded:
        raise ConfigError("async_rollout under FSDP2: the local generation worker needs a whole copy of the "
                          "policy; use rollout_engine=vllm with vllm_mode=server")
    return ProcessEngine(o, model, dtype, tokenizer, c.rollout_worker_threads or torch.get_num_threads())


def _final_report(c: GRPOConfig, run: Run) -> None:
    if c.write_report and run.is_main:
        path = write_report_safely(run.out_dir, c.report_markers)
        if path is not None:
            run.write(f"r1kit: report: {path}")


def load_reward_models(c: GRPOConfig, device) -> dict:
    """The reward models of the run, by role: helpfulness (scores the summary) and harmlessness (the whole
    response) of all-scenario RL, the same model serving both when harmlessness_model is not set; "process",
    a process reward model scoring the steps of reasoning completions. Empty without either."""
    judges = {}
    if c.reward_model:
        from r1kit.models.reward_model import load_reward_model

        helpful = load_reward_model(c.reward_model, device=device)
        harmless = helpful if c.harmlessness_model in (None, c.reward_model) else load_reward_model(c.harmlessness_model, device=device)
        judges.update(helpfulness=helpful, harmlessness=harmless)
    if c.process_reward_model:
        from r1kit.models.process_reward_model import load_process_reward_model

        judges["process"] = load_process_reward_model(c.process_reward_model, device=device)
    return judges
