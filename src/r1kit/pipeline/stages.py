"""The stage types of the R1 pipeline: one table (`STAGE_TYPES`) that the pipeline and the command line read.

A stage type says where its config dataclass and validator live, how it runs, what it leaves behind
(the artifacts an "@stage" reference can name), whether it resumes, and whether it is also a command of
its own (`r1kit grpo`, `r1kit sft`, ...). Adding a stage type is one entry here: the pipeline accepts it
as `type:` and, when it has a `command`, the command line gets `r1kit NAME` with one option per field.

Design decisions:
- Config classes are named by (module, class, validator) and imported when needed, so reading the table
  loads no model code; each runner imports its module inside the function for the same reason.
- A runner takes (config, stage folder) and returns (artifacts, account): the artifacts (paths) go into
  the pipeline's manifest, the account is the line its command prints when it is done. The command line
  passes the config's own output_dir as the stage folder, so a stage behaves the same alone and in a
  pipeline.
"""

from __future__ import annotations

import importlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from r1kit.core.options import Options, build_dataclass, opt

# what a stage can leave behind: a model folder, a dataset file, a run folder
ARTIFACTS = ("model", "data", "run")


# --- the small stage types that have no command of their own


@dataclass
class TinyModelConfig(Options):
    alphabet: str | None = opt(None, "characters of the tiny character-level model (default: digits, letters, math)")
    hidden_size: int = opt(64, "hidden size")
    num_layers: int = opt(2, "decoder layers")
    seed: int = opt(0, "initialisation seed")


@dataclass
class ModelStageConfig(Options):
    model: str = opt("embedded", "an existing model: local HF folder, cached hub id or 'embedded'")


@dataclass
class StudentConfig(Options):
    model: str = opt("embedded", "the model the student is cut from")
    num_layers: int = opt(2, "decoder layers the student keeps (evenly spaced, first and last included)")


# --- runners: (config, stage folder) -> (artifacts, the line the stage's command prints; "" without a command)


def _run_tiny(c: TinyModelConfig, stage_dir: Path) -> tuple[dict, str]:
    from r1kit.models.loading import build_tiny_model

    tmp = stage_dir / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    build_tiny_model(tmp, alphabet=c.alphabet, hidden_size=c.hidden_size, num_layers=c.num_layers, seed=c.seed)
    os.replace(tmp, stage_dir / "model")
    return {"model": str(stage_dir / "model")}, ""


def _run_model(c: ModelStageConfig, stage_dir: Path) -> tuple[dict, str]:
    from r1kit.models.loading import resolve_model_path

    return {"model": resolve_model_path(c.model)}, ""


def _run_student(c: StudentConfig, stage_dir: Path) -> tuple[dict, str]:
    from r1kit.models.loading import resolve_model_path
    from r1kit.pipeline.distill import make_student

    return {"model": str(make_student(resolve_model_path(c.model), stage_dir / "model", c.num_layers))}, ""


def _run_grpo(c, stage_dir: Path) -> tuple[dict, str]:
    from r1kit.trainers.checkpoint import latest_checkpoint
    from r1kit.trainers.grpo.trainer import train

    history = train(c)
    last = history[-1] if history else {}
    account = (f"done: step {last['step']}, reward {last['reward']:.3f}, format {last['format_rate']:.2f}, "
               f"accuracy {last['accuracy']:.2f}; outputs in {c.output_dir}") if last else ""
    return {"model": str(latest_checkpoint(stage_dir)), "run": str(stage_dir)}, account


def _run_sft(c, stage_dir: Path) -> tuple[dict, str]:
    from r1kit.trainers.sft import final_model_dir, sft_train

    history = sft_train(c)
    last = history[-1] if history else {}
    account = (f"sft done: {len(history)} steps, final loss {last.get('loss', float('nan')):.4f}; "
               f"outputs in {c.output_dir}")
    return {"model": str(final_model_dir(stage_dir)), "run": str(stage_dir)}, account


def _run_coldstart(c, stage_dir: Path) -> tuple[dict, str]:
    from r1kit.pipeline.coldstart import build_cold_start

    build_cold_start(c)
    account = f"cold-start data in {c.output_dir}/data.jsonl (filter counts: {c.output_dir}/filter_report.json)"
    return {"data": str(stage_dir / "data.jsonl"), "run": str(stage_dir)}, account


def _run_rejection(c, stage_dir: Path) -> tuple[dict, str]:
    from r1kit.pipeline.rejection import rejection_sample

    rejection_sample(c)
    account = f"SFT data in {c.output_dir}/data.jsonl (counts at each filter: {c.output_dir}/counts.json)"
    return {"data": str(stage_dir / "data.jsonl"), "run": str(stage_dir)}, account


def _run_rm(c, stage_dir: Path) -> tuple[dict, str]:
    from r1kit.trainers.reward_model import train_reward_model

    train_reward_model(c)
    return {"model": str(stage_dir / "model"), "run": str(stage_dir)}, f"reward model in {c.output_dir}/model"


def _run_prm_data(c, stage_dir: Path) -> tuple[dict, str]:
    from r1kit.pipeline.prm_data import build_prm_data

    counts = build_prm_data(c)
    account = (f"step labels of {counts['solutions']} solutions in {c.output_dir}/data.jsonl (counts: "
               f"{c.output_dir}/prm_data.json)")
    return {"data": str(stage_dir / "data.jsonl"), "run": str(stage_dir)}, account


def _run_prm(c, stage_dir: Path) -> tuple[dict, str]:
    from r1kit.trainers.prm import train_prm

    s = train_prm(c)
    acc = s["held_out_step_accuracy_after"]
    account = f"process reward model in {c.output_dir}/model" + (
        f" (held-out step accuracy {s['held_out_step_accuracy_before']:.3f} -> {acc:.3f})" if acc is not None else "")
    return {"model": str(stage_dir / "model"), "run": str(stage_dir)}, account


def _run_mcts(c, stage_dir: Path) -> tuple[dict, str]:
    from r1kit.pipeline.mcts import models_of_round, run_mcts

    lines = run_mcts(c)
    last = lines[-1] if lines else {}
    account = (f"mcts done: {c.rounds} rounds" + (f", eval pass@1 {last['eval/pass@1']:.3f}" if "eval/pass@1" in last
                                                  else "") + f"; outputs in {c.output_dir}")
    return {"model": models_of_round(c, stage_dir, c.rounds)[0], "run": str(stage_dir)}, account


# --- the table


@dataclass(frozen=True)
class StageType:
    config: tuple[str, str]  # (module, config class), imported when needed
    run: Callable[[Any, Path], tuple[dict, str]]
    default_artifact: str  # what "@stage" means
    output_dir: bool = True  # the config has an output_dir the pipeline sets
    resumable: bool = False  # an interrupted stage continues from its last checkpoint
    evaluate: bool = True  # its "model" artifact is a language model worth evaluating
    command: str | None = None  # help of `r1kit NAME`, which runs the stage alone; None: pipeline only
    aliases: tuple[str, ...] = ()  # other names of the command
    description: str | None = None  # the command's --help text (default: its help)


STAGE_TYPES: dict[str, StageType] = {
    "tiny_model": StageType((__name__, "TinyModelConfig"), _run_tiny, "model", output_dir=False),
    "model": StageType((__name__, "ModelStageConfig"), _run_model, "model", output_dir=False),
    "student": StageType((__name__, "StudentConfig"), _run_student, "model", output_dir=False),
    "grpo": StageType(("r1kit.trainers.grpo.config", "GRPOConfig"), _run_grpo, "model", resumable=True,
                      command="train with GRPO (R1-Zero: RL straight from a model)", aliases=("zero",),
                      description="Train a model with GRPO and rule-based rewards."),
    "sft": StageType(("r1kit.trainers.sft", "SFTConfig"), _run_sft, "model", resumable=True,
                     command="supervised fine-tuning on prompt/response JSONL, loss on response tokens only"),
    "coldstart": StageType(("r1kit.pipeline.coldstart", "ColdStartConfig"), _run_coldstart, "data",
                           evaluate=False,
                           command="build cold-start long chain-of-thought data in R1's readable format"),
    "rejection": StageType(("r1kit.pipeline.rejection", "RejectionConfig"), _run_rejection, "data",
                           evaluate=False, command="rejection sampling: sample from a checkpoint, keep correct "
                                                   "readable answers, add non-reasoning data"),
    "rm": StageType(("r1kit.trainers.reward_model", "RMConfig"), _run_rm, "model", evaluate=False,
                    resumable=True,
                    command="train a reward model (Bradley-Terry on chosen/rejected pairs)"),
    "prm_data": StageType(("r1kit.pipeline.prm_data", "PRMDataConfig"), _run_prm_data, "data", evaluate=False,
                          aliases=("prm-data",),
                          command="step labels, Math-Shepherd style: each step labelled by the share of rollouts "
                                  "from its prefix that reach the right answer"),
    "prm": StageType(("r1kit.trainers.prm", "PRMConfig"), _run_prm, "model", evaluate=False, resumable=True,
                     command="train a process reward model (a token head scoring each step) on step labels"),
    "mcts": StageType(("r1kit.pipeline.mcts", "MCTSConfig"), _run_mcts, "model", resumable=True,
                      command="MCTS rounds: UCT search over steps guided by a value head, then the value head and "
                              "the actor trained on what it found"),
}


def config_class(kind: str) -> type:
    """A stage type's config dataclass (an Options: `validate()` runs its checks)."""
    module, cls = STAGE_TYPES[kind].config
    return getattr(importlib.import_module(module), cls)


def make_stage_config(kind: str, values: dict, source: str) -> Any:
    """A stage's config from its options; ConfigError names `source` and the option."""
    c = build_dataclass(config_class(kind), [(source, values)])
    c.validate()
    return c


def stage_commands() -> dict[str, StageType]:
    """The stage types that are also commands, by command name."""
    return {name: stype for name, stype in STAGE_TYPES.items() if stype.command}
