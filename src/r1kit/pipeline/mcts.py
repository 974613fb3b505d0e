"""MCTS rounds (`r1kit mcts`): DeepSeek-R1 section 4.2's second unsuccessful attempt, reproducible.

The paper: "we use collected prompts to find answers via MCTS guided by a pre-trained value model.
Subsequently, we use the resulting question-answer pairs to train both the actor model and the value
model, iteratively refining the process." Each round here:

1. search: a tree search (r1kit.pipeline.mcts_search, UCT over steps, at most `max_children` children per
   node and `max_depth` steps) on `prompts_per_round` prompts, `search_batch` problems in lockstep;
2. value: the value head (a process reward model, r1kit.trainers.prm) trained on the Monte Carlo outcomes
   of the search's rollouts, for `value_steps` steps;
3. actor: the actor fine-tuned (r1kit.trainers.sft) on the correct solutions the search found, for
   `actor_steps` steps;
then the held-out evaluation every `eval_steps` rounds. Round r+1 searches with round r's actor and value
head.

Design decisions:
- Every phase leaves a file that says it is done, so a run is resumed from what is on disk, with no state
  file to keep in step: OUTPUT_DIR/round-R/search.jsonl (one line per search batch; search.json when all
  are done), round-R/value (a PRM run: prm_summary.json), round-R/actor (an SFT run: sft_summary.json).
  The value and actor phases are runs of the shared loop, so a kill inside them resumes from their last
  checkpoint exactly; a kill inside the search loses at most the batch in progress, which is searched
  again with the same seed. SIGINT/SIGTERM during the search stop after the current batch.
- metrics.jsonl has one line per round (step = round): search statistics (nodes, depth, children per
  expansion, value error, share of searches that found a correct leaf, share whose chosen path is
  correct), the value head's held-out step accuracy, the actor's loss, each phase's seconds, the
  cumulative training seconds (evaluation excluded), and eval/pass@1 when evaluated.
- The value model of round 1 is `value_model` (a trained process reward model: the paper's "pre-trained
  value model"), or a new head on `model`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from r1kit.core.errors import ConfigError, TrainingStopped
from r1kit.core.files import append_jsonl, iter_jsonl, truncate_jsonl, write_json
from r1kit.core.lock import LOCK_NAME, FolderLock
from r1kit.core.options import load_config, need, need_choice, opt
from r1kit.data.options import DataOptions, PromptOptions
from r1kit.data.order import prompt_indices
from r1kit.data.templates import build_prompt
from r1kit.evaluation.options import EvalOptions
from r1kit.models.options import ModelOptions
from r1kit.pipeline.mcts_search import SearchSettings, new_tree, search, tree_result
from r1kit.rewards.readable import DEFAULT_SPECIAL_TOKEN
from r1kit.rewards.steps import STEP_MODES


@dataclass
class MCTSConfig(EvalOptions, PromptOptions, DataOptions, ModelOptions):
    # the search
    value_model: str | None = opt(None, "the value head of round 1: a process reward model (OUTPUT_DIR/model of `r1kit "
                                        "prm`); null: a new head on `model`")
    rounds: int = opt(2, "rounds of search, value training and actor training")
    prompts_per_round: int = opt(16, "prompts searched per round (the dataset's seeded order, never repeated "
                                     "before it is used up)")
    search_batch: int = opt(8, "problems searched together (one batched generation per simulation)")
    num_simulations: int = opt(8, "simulations (select, expand, back up) per problem")
    max_children: int = opt(4, "the children cap: continuations sampled per expansion; identical first steps merge")
    max_depth: int = opt(8, "the depth cap: a child at this depth takes the rest of its continuation as one step")
    c_uct: float = opt(1.0, "UCT's exploration constant")
    value_mix: float = opt(0.0, "a child's value: (1 - value_mix) x value head + value_mix x its rollout's outcome "
                                "(AlphaGo's lambda; 0: the value head alone, as AlphaZero)")
    step_mode: str = opt("lines", f"where a step ends: {', '.join(STEP_MODES)}")
    special_token: str = opt(DEFAULT_SPECIAL_TOKEN, "the readable format's separator")
    max_completion_length: int = opt(128, "most new tokens per continuation")
    temperature: float = opt(1.0, "sampling temperature of the expansions")
    top_p: float = opt(1.0, "nucleus sampling of the expansions")
    # training
    actor_steps: int = opt(8, "SFT steps of the actor per round on the solutions found (0: no actor training)")
    actor_learning_rate: float = opt(1e-5, "the actor's learning rate")
    actor_batch_size: int = opt(8, "solutions per actor step")
    actor_solutions: int = opt(2, "distinct correct solutions per problem the actor is trained on (most visited first)")
    value_steps: int = opt(8, "steps of the value head per round on the search's outcomes (0: no value training)")
    value_learning_rate: float = opt(1e-5, "the value head's learning rate")
    value_batch_size: int = opt(8, "value records per step")
    save_steps: int = opt(0, "checkpoint the value and actor runs every N steps (0: at the end of each), so a kill "
                             "inside one resumes from there")
    # the run
    seed: int = opt(42, "seed for the prompt order, the search's sampling and training")
    output_dir: str = opt("runs/mcts", "folder for metrics.jsonl and the rounds")
    resume: bool = opt(False, "continue the run in output_dir from what it has done")
    overwrite_output_dir: bool = opt(False, "start afresh even if output_dir already holds a run")
    torch_threads: int | None = opt(None, "CPU threads (default: OMP_NUM_THREADS, else all cores)")
    # PromptOptions' and EvalOptions', with the search's defaults
    template: str = opt("plain", "'plain', 'r1zero' or 'chat', as the actor was trained")
    eval_steps: int = opt(1, "evaluate the actor on a held-out set before round 1 and every N rounds (0: never)")
    eval_benchmark: str = opt("arithmetic", "the held-out set (see r1kit grpo --help)")
    eval_style: str = opt("readable", "auto or readable (see r1kit grpo --help)")

    def check(self) -> None:
        for name in ("rounds", "prompts_per_round", "search_batch", "num_simulations", "max_children", "max_depth",
                     "max_completion_length", "actor_batch_size", "actor_solutions", "value_batch_size"):
            need(getattr(self, name) >= 1, f"{name}={getattr(self, name)}: must be >= 1")
        need(self.actor_steps >= 0 and self.value_steps >= 0, "actor_steps and value_steps must be >= 0")
        need(self.save_steps >= 0, f"save_steps={self.save_steps}: must be >= 0")
        need(self.c_uct >= 0, f"c_uct={self.c_uct}: must be >= 0")
        need(0 <= self.value_mix <= 1, f"value_mix={self.value_mix}: must be in [0, 1]")
        need(self.temperature > 0 and 0 < self.top_p <= 1, "temperature must be > 0 and top_p in (0, 1]")
        need(self.actor_learning_rate >= 0 and self.value_learning_rate >= 0, "learning rates must be >= 0")
        need_choice("step_mode", self.step_mode, STEP_MODES)
        need(not (self.resume and self.overwrite_output_dir), "resume and overwrite_output_dir: choose one")
        need(self.torch_threads is None or self.torch_threads >= 1, "torch_threads must be >= 1")

    def settings(self) -> SearchSettings:
        return SearchSettings(self.num_simulations, self.max_children, self.max_depth, self.c_uct, self.value_mix,
                              self.step_mode, self.special_token, self.prefill)


def make_mcts_config(yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> MCTSConfig:
    return load_config(MCTSConfig, None, yaml_path, overrides)


def _claim(c: MCTSConfig) -> Path:
    out = Path(c.output_dir)
    held = (out / "metrics.jsonl").exists() or any(out.glob("round-*"))
    if held and not (c.resume or c.overwrite_output_dir):
        raise ConfigError(f"output_dir {out} already holds a run; pass --resume to continue it, --overwrite_output_dir "
                          f"to replace it, or choose another output_dir")
    if held and c.overwrite_output_dir:
        import shutil

        for child in out.iterdir():  # all but the lock this run holds
            if child.name != LOCK_NAME:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    if not (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").write_text("")
        write_json(out / "config.json", asdict(c))
    return out


def run_mcts(config: MCTSConfig, show_progress: bool = True) -> list[dict]:
    """Run (or continue) the rounds; returns every round's metrics line (as in metrics.jsonl)."""
    import torch

    from r1kit.models.loading import default_threads

    c = config
    c.validate()
    if c.resume and c.overwrite_output_dir:
        raise ConfigError("resume and overwrite_output_dir: choose one")
    with FolderLock.acquire(c.output_dir):  # one run per folder, as every trainer's
        out = _claim(c)
        torch.set_num_threads(default_threads(c.torch_threads))
        problems = DataOptions.from_config(c).problems(c.seed)
        done = sum(1 for r in iter_jsonl(out / "metrics.jsonl") if r.get("round", 0) >= 1)
        truncate_jsonl(out / "metrics.jsonl", done)  # a line cut short by a kill
        lines = list(iter_jsonl(out / "metrics.jsonl"))
        wall = lines[-1]["train_seconds"] if lines and "train_seconds" in lines[-1] else 0.0
        if c.eval_steps and not lines:
            base = {"round": 0, "step": 0, "train_seconds": 0.0, **evaluate_actor(c, c.model)}
            append_jsonl(out / "metrics.jsonl", [base])
            lines.append(base)
        for r in range(done, c.rounds):
            actor, value = models_of_round(c, out, r)
            picked = prompt_indices(len(problems), r * c.prompts_per_round, c.prompts_per_round, c.seed)
            batch = [problems[i] for i in picked]
            metrics: dict = {"round": r + 1, "step": r + 1}
            results, metrics["seconds/search"] = search_phase(c, out / f"round-{r}", batch, actor, value, r,
                                                             show_progress)
            metrics.update(search_metrics(results))
            metrics.update(value_phase(c, out / f"round-{r}", results, value))
            metrics.update(actor_phase(c, out / f"round-{r}", results, actor))
            wall += metrics["seconds/search"] + metrics["seconds/value"] + metrics["seconds/actor"]
            metrics["train_seconds"] = wall
            if c.eval_steps and ((r + 1) % c.eval_steps == 0 or r + 1 == c.rounds):
                metrics.update(evaluate_actor(c, models_of_round(c, out, r + 1)[0]))
            append_jsonl(out / "metrics.jsonl", [metrics])
            lines.append(metrics)
            if show_progress:
                print(f"r1kit: mcts: round {r + 1}: found a correct leaf in {metrics['search/found_correct']:.2f} of "
                      f"the searches, chosen path correct {metrics['search/chosen_correct']:.2f}, value error "
                      f"{metrics['search/value_error']}" + (f", eval pass@1 {metrics['eval/pass@1']:.3f}"
                                                            if "eval/pass@1" in metrics else ""), file=sys.stderr)
        return lines


def models_of_round(c: MCTSConfig, out: Path, r: int) -> tuple[str, str | None]:
    """(actor, value model) that round r searches with: the previous round's trained ones, or the start."""
    from r1kit.trainers.checkpoint import latest_checkpoint

    actor, value = c.model, c.value_model
    for k in range(r):
        trained = latest_checkpoint(out / f"round-{k}" / "actor")
        actor = str(trained) if trained is not None else actor
        if (out / f"round-{k}" / "value" / "model").is_dir():
            value = str(out / f"round-{k}" / "value" / "model")
    return actor, value


def search_phase(c: MCTSConfig, rdir: Path, problems: list, actor: str, value: str | None, r: int,
                 show_progress: bool) -> tuple[list[dict], float]:
    """The round's searches, one line of search.jsonl per batch; batches already on disk are kept. Returns
    every tree's result and the seconds spent searching (this time and before a resume)."""
    from r1kit.pipeline.prm_data import sampler_completer
    from r1kit.trainers.loop import install_stop_handlers, stop_signal

    path = rdir / "search.jsonl"
    if (rdir / "search.json").is_file():
        lines = list(iter_jsonl(path))
        return [t for line in lines for t in line["trees"]], json.loads((rdir / "search.json").read_text())["seconds"]
    rdir.mkdir(parents=True, exist_ok=True)
    batches = [problems[i:i + c.search_batch] for i in range(0, len(problems), c.search_batch)]
    truncate_jsonl(path, len(batches))  # a batch line cut short by a kill is searched again
    lines = list(iter_jsonl(path))
    completer, tokenizer = sampler_completer(ModelOptions.from_config(c, model=actor),
                                             max_new_tokens=c.max_completion_length, temperature=c.temperature,
                                             top_p=c.top_p, batch_size=c.search_batch,
                                             max_prompt_length=c.max_prompt_length)
    value_model = _value_model(c, value)
    handlers = install_stop_handlers(announce=True)
    try:
        for b in range(len(lines), len(batches)):
            t0 = time.perf_counter()
            trees = [new_tree(p, build_prompt(p.question, tokenizer, c.template, c.prefill, messages=p.messages,
                                              system_prompt=c.system_prompt), c.prefill) for p in batches[b]]
            search(trees, completer, value_model, c.settings(), (c.seed * 1009 + r) * 1009 + b)
            line = {"step": b + 1, "seconds": time.perf_counter() - t0,
                    "trees": [tree_result(t, c.actor_solutions) for t in trees]}
            append_jsonl(path, [line])
            lines.append(line)
            if show_progress:
                print(f"r1kit: mcts: round {r + 1}: searched batch {b + 1}/{len(batches)} ({line['seconds']:.0f} s)",
                      file=sys.stderr)
            if stop_signal() and b + 1 < len(batches):
                raise TrainingStopped(f"stopped by {stop_signal()} after search batch {b + 1} of round {r + 1}",
                                      r, str(path))
    finally:
        import signal

        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    seconds = sum(line["seconds"] for line in lines)
    write_json(rdir / "search.json", {"batches": len(batches), "seconds": seconds})
    return [t for line in lines for t in line["trees"]], seconds


def _value_model(c: MCTSConfig, value: str | None):
    """The value head the search reads: a trained one, or a new (seeded) head on the start model."""
    from r1kit.models.process_reward_model import ProcessRewardModel, load_process_reward_model, load_token_classifier

    if value is not None:
        return load_process_reward_model(value, trust_remote_code=c.trust_remote_code)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_token_classifier(c.model, c.trust_remote_code, new_head=True, seed=c.seed)
    return ProcessRewardModel(model.to(device), tokenizer, device, {"template": c.template, "step_mode": c.step_mode,
                                                                    "special_token": c.special_token})


def search_metrics(results: list[dict]) -> dict:
    """A round's search statistics, averaged over its problems."""
    n = max(len(results), 1)
    errors = [t["value_error"] for t in results if t["value_error"] is not None]
    mean = lambda key: sum(t[key] for t in results) / n  # noqa: E731
    return {"search/problems": len(results), "search/found_correct": mean("found_correct"),
            "search/chosen_correct": mean("chosen_correct"), "search/nodes": mean("nodes"),
            "search/max_depth": mean("max_depth"), "search/children_per_expansion": mean("children_per_expansion"),
            "search/rollout_accuracy": mean("root_share_correct"),
            "search/value_error": sum(errors) / len(errors) if errors else None,
            "search/solutions": sum(len(t["solutions"]) for t in results),
            "search/value_records": sum(len(t["value_records"]) for t in results)}


def _sub_run(rdir: Path) -> dict:
    """A phase's run folder is resumed when it has a checkpoint, else started afresh (a folder killed before
    its first checkpoint holds nothing to keep)."""
    from r1kit.trainers.checkpoint import latest_checkpoint

    has = latest_checkpoint(rdir) is not None
    return {"output_dir": str(rdir), "resume": has, "overwrite_output_dir": not has}


def value_phase(c: MCTSConfig, rdir: Path, results: list[dict], value: str | None) -> dict:
    """Train the value head on the search's Monte Carlo outcomes (skipped with value_steps 0)."""
    from r1kit.trainers.prm import PRMConfig, train_prm

    records = [rec for t in results for rec in t["value_records"]]
    if not c.value_steps or not records:
        return {"seconds/value": 0.0}
    done = rdir / "value" / "prm_summary.json"  # a finished phase is read back, not run again
    pc = PRMConfig(model=value or c.model, trust_remote_code=c.trust_remote_code, template=c.template,
                   step_mode=c.step_mode, special_token=c.special_token, max_steps=c.value_steps,
                   learning_rate=c.value_learning_rate, per_device_train_batch_size=c.value_batch_size,
                   eval_fraction=0.25, seed=c.seed, torch_threads=c.torch_threads, lr_scheduler_type="constant",
                   save_steps=c.save_steps, **_sub_run(rdir / "value"))
    summary = json.loads(done.read_text()) if done.is_file() else train_prm(pc, records, show_progress=False)
    return {"seconds/value": summary["seconds"], "value/records": len(records),
            "value/held_out_step_accuracy_before": summary["held_out_step_accuracy_before"],
            "value/held_out_step_accuracy_after": summary["held_out_step_accuracy_after"],
            "value/held_out_brier_after": summary["held_out_brier_after"]}


def actor_phase(c: MCTSConfig, rdir: Path, results: list[dict], actor: str) -> dict:
    """Fine-tune the actor on the correct solutions found (skipped with actor_steps 0 or none found)."""
    from r1kit.trainers.sft import SFTConfig, sft_train

    records = [{"prompt": t["question"], "response": s} for t in results for s in t["solutions"]]
    if not c.actor_steps or not records:
        return {"seconds/actor": 0.0, "actor/solutions": len(records)}
    done = rdir / "actor" / "sft_summary.json"  # a finished phase is read back, not run again
    sc = SFTConfig(model=actor, trust_remote_code=c.trust_remote_code, dtype=c.dtype, template=c.template,
                   max_steps=c.actor_steps, learning_rate=c.actor_learning_rate,
                   per_device_train_batch_size=c.actor_batch_size, seed=c.seed, torch_threads=c.torch_threads,
                   lr_scheduler_type="constant", max_length=c.max_prompt_length + c.max_completion_length,
                   save_steps=c.save_steps, **_sub_run(rdir / "actor"))
    if not done.is_file():
        sft_train(sc, records, show_progress=False)
    summary = json.loads(done.read_text())
    return {"seconds/actor": summary["seconds"], "actor/solutions": len(records), "actor/loss": summary["final_loss"]}


def evaluate_actor(c: MCTSConfig, actor: str) -> dict:
    """The actor's held-out pass@1 (EvalOptions), as GRPO's evaluation reports it."""
    import torch

    from r1kit.evaluation.benchmarks import held_out_problems
    from r1kit.evaluation.evaluate import STYLE_FOR_TEMPLATE, evaluate
    from r1kit.models.loading import load_model, load_tokenizer

    problems = held_out_problems(c.eval_benchmark, c.eval_limit, c.seed, c.data_dir, question_field=c.question_field,
                                 answer_field=c.answer_field, arithmetic_terms=c.arithmetic_terms,
                                 arithmetic_max_value=c.arithmetic_max_value, arithmetic_ops=c.arithmetic_ops)
    t0 = time.perf_counter()
    model = load_model(actor, trust_remote_code=c.trust_remote_code).to("cuda" if torch.cuda.is_available() else "cpu")
    summary, _ = evaluate(model, load_tokenizer(actor, c.trust_remote_code), problems,
                          num_samples=c.eval_num_samples, temperature=c.eval_temperature, top_p=c.eval_top_p,
                          max_new_tokens=c.eval_max_new_tokens or c.max_completion_length,
                          prompt_style=STYLE_FOR_TEMPLATE[c.template] if c.eval_style == "auto" else c.eval_style,
                          prefill=c.prefill, template=c.template, special_token=c.special_token, seed=c.seed,
                          think_gain=c.eval_think_gain)
    keep = ("pass@1", f"cons@{c.eval_num_samples}", "format_rate", "mean_length", "pass@1_no_think", "think_gain")
    return {**{f"eval/{k}": summary[k] for k in keep if k in summary}, "eval/seconds": time.perf_counter() - t0}
