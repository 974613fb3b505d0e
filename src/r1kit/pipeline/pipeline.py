"""`r1kit pipeline CONFIG.yaml`: the DeepSeek-R1 recipe as a declarative list of stages.

    R1-Zero -> cold-start data -> cold-start SFT -> reasoning RL -> rejection sampling -> SFT from the base
    -> RL for all scenarios (+ a reward model), and distillation into a smaller student.

Design decisions:
- A stage is a mapping: `name`, `type`, the options of that type's config (the same names as the stage's
  own command: `r1kit grpo`, `r1kit sft`, ...), and an optional `eval` override. The stage types are
  the table `r1kit.stages.STAGE_TYPES`, which the command line reads too. Options are checked
  for every stage before anything runs, so a typo in the last stage fails in the first second, with the
  stage and the key named.
- A string option "@stage" (or "@stage.model", "@stage.data", "@stage.run") is the artifact of an
  earlier stage: its final model folder, its dataset file or its run folder. References only point
  backwards; the pipeline sets every stage's output_dir to OUTPUT_DIR/<stage name>. Relative .jsonl /
  .json / .yaml paths are relative to the config file, so a pipeline runs from any working directory.
- Every stage leaves its artifacts in its folder and an entry in OUTPUT_DIR/manifest.json (written
  atomically after each stage): type, fingerprint, artifacts, evaluation, seconds. A stage's
  fingerprint hashes its options and the fingerprints of the stages it reads, so editing a stage reruns
  it and everything downstream of it, and nothing else; editing only its evaluation settings
  re-evaluates it. A stage is marked done before it is evaluated, so a failed evaluation never retrains.
- A rerun skips finished stages whose fingerprint is unchanged and whose artifacts exist; a training
  stage that was interrupted resumes from its last checkpoint; `--from STAGE` reruns STAGE and all
  later stages from scratch. OUTPUT_DIR is locked for the pipeline's life (core/lock.py): a second
  pipeline in it is refused, naming the first.
- After every stage that produces a language model, the pipeline evaluates it the same way (one
  benchmark, k samples, temperature 0.6, top-p 0.95 by default), each in its own output format; the
  final summary puts all stages side by side (summary.md, summary.json).
- Stages train full weights: a LoRA stage would leave an adapter that the next stage cannot load as a
  model, so `use_lora` is rejected here (it works in the stand-alone commands).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from r1kit.core.errors import ConfigError, PipelineError
from r1kit.core.files import write_atomic, write_json
from r1kit.core.lock import FolderLock
from r1kit.core.options import build_dataclass, need, opt, read_yaml
from r1kit.pipeline.stages import ARTIFACTS, STAGE_TYPES, config_class, make_stage_config

MANIFEST = "manifest.json"


@dataclass
class EvalSettings:
    benchmark: str = opt("gsm8k", "gsm8k, math500, aime24, aime25, amc23, a .jsonl, or 'arithmetic' (held-out synthetic)")
    limit: int = opt(50, "problems evaluated (the first N)")
    num_samples: int = opt(4, "k samples per problem (pass@1 averaged over k, cons@k)")
    max_new_tokens: int = opt(256, "most new tokens per sample")
    temperature: float = opt(0.6, "sampling temperature (paper: 0.6)")
    top_p: float = opt(0.95, "top-p (paper: 0.95)")
    style: str = opt("auto", "auto (the stage's own format), r1zero, r1chat, chat, fewshot or readable")
    template: str = opt("plain", "prompt template for the readable style when the stage has none")
    prefill: str = opt("", "response prefill when the stage has none")
    special_token: str = opt("|special_token|", "the readable format's separator")
    batch_size: int = opt(8, "problems per generation batch")
    seed: int = opt(0, "sampling seed")
    data_dir: str | None = opt(None, "benchmark data folder (default $R1KIT_DATA_DIR or ../shared/data)")
    arithmetic_terms: int = opt(2, "arithmetic benchmark: numbers per question")
    arithmetic_max_value: int = opt(99, "arithmetic benchmark: largest number")
    arithmetic_ops: str = opt("+", "arithmetic benchmark: operators")


def validate_eval(ev: EvalSettings, where: str) -> None:
    """Reject evaluation settings that would only fail (or silently evaluate everything) after training."""
    try:
        need(ev.limit >= 1 and ev.num_samples >= 1 and ev.batch_size >= 1 and ev.max_new_tokens >= 1,
             "limit, num_samples, batch_size and max_new_tokens must be >= 1")
        need(0 < ev.top_p <= 1, f"top_p={ev.top_p}: must be in (0, 1]")
        need(ev.temperature >= 0, f"temperature={ev.temperature}: must be >= 0")
    except ConfigError as e:
        raise PipelineError(f"{where}: {e}") from None


RESERVED = ("name", "type", "eval")


@dataclass
class Stage:
    name: str
    type: str
    options: dict[str, Any]  # as written, references unresolved
    eval: dict[str, Any] | None  # None: not evaluated
    refs: dict[str, tuple[str, str]]  # option -> (stage, artifact)


@dataclass
class Pipeline:
    path: Path
    output_dir: Path
    stages: list[Stage]
    eval: dict[str, Any]


def _parse_ref(value: Any) -> tuple[str, str | None] | None:
    if not isinstance(value, str) or not value.startswith("@"):
        return None
    name, _, artifact = value[1:].partition(".")
    return name, artifact or None


def load_pipeline(path: str | Path, output_dir: str | None = None) -> Pipeline:
    """Read and check a pipeline config: every stage's options, references and evaluation settings."""
    path = Path(path)
    raw = read_yaml(path)
    unknown = set(raw) - {"output_dir", "eval", "defaults", "stages"}
    if unknown:
        raise PipelineError(f"{path}: unknown top-level key '{sorted(unknown)[0]}' (expected output_dir, eval, defaults, stages)")
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise PipelineError(f"{path}: 'stages' must be a non-empty list of stages")
    defaults = raw.get("defaults") or {}
    eval_raw = raw.get("eval") or {}
    if not isinstance(defaults, dict) or not isinstance(eval_raw, dict):
        raise PipelineError(f"{path}: 'defaults' and 'eval' must be mappings")
    validate_eval(build_dataclass(EvalSettings, [(f"{path}: eval", eval_raw)]), f"{path}: eval")
    out = Path(output_dir or raw.get("output_dir") or f"runs/{path.stem}")
    stages: list[Stage] = []
    for i, st in enumerate(stages_raw, 1):
        where = f"{path}: stage #{i}"
        if not isinstance(st, dict):
            raise PipelineError(f"{where}: expected a mapping with name, type and options")
        name, kind = st.get("name"), st.get("type")
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise PipelineError(f"{where}: 'name' must be a word (letters, digits, - and _), got {name!r}")
        where = f"{path}: stage '{name}'"
        if any(s.name == name for s in stages):
            raise PipelineError(f"{where}: the name is used by an earlier stage")
        if kind not in STAGE_TYPES:
            raise PipelineError(f"{where}: key 'type': {kind!r} is not a stage type; choose {', '.join(STAGE_TYPES)}")
        stype = STAGE_TYPES[kind]
        fields = {f.name for f in dataclasses.fields(config_class(kind))}
        options = {k: v for k, v in defaults.items() if k in fields}
        options.update({k: v for k, v in st.items() if k not in RESERVED})
        if "output_dir" in options and stype.output_dir:
            raise PipelineError(f"{where}: key 'output_dir': the pipeline sets it (OUTPUT_DIR/{name})")
        if options.get("use_lora"):
            raise PipelineError(f"{where}: key 'use_lora': pipeline stages train full weights "
                                f"(the next stage needs a whole model)")
        for key, value in options.items():
            # relative file paths are relative to the config file (the way compose files work), so a
            # pipeline runs from any working directory
            if isinstance(value, str) and value.endswith((".jsonl", ".json", ".yaml")) and not Path(value).is_absolute() \
                    and (path.parent / value).exists():
                options[key] = str((path.parent / value).resolve())
        refs: dict[str, tuple[str, str]] = {}
        for key, value in options.items():
            ref = _parse_ref(value)
            if ref is None:
                continue
            target, artifact = ref
            earlier = next((s for s in stages if s.name == target), None)
            if earlier is None:
                raise PipelineError(f"{where}: key '{key}': '{value}' does not name an earlier stage")
            artifact = artifact or STAGE_TYPES[earlier.type].default_artifact
            if artifact not in ARTIFACTS:
                raise PipelineError(f"{where}: key '{key}': '{value}': artifact must be one of {', '.join(ARTIFACTS)}")
            refs[key] = (target, artifact)
        # type-check the options now, with placeholder paths for the references
        probe = {k: (f"<{v}>" if k in refs else v) for k, v in options.items()}
        if stype.output_dir:
            probe["output_dir"] = str(out / name)
        try:
            make_stage_config(kind, probe, where)
        except ConfigError as e:
            msg = str(e)
            raise PipelineError(msg if msg.startswith(where) else f"{where}: {msg}") from None
        ev = st.get("eval", {})
        if ev is False or not stype.evaluate:
            stage_eval = None
        elif isinstance(ev, dict):
            stage_eval = {**eval_raw, **ev}
            validate_eval(build_dataclass(EvalSettings, [(f"{where}: eval", stage_eval)]), f"{where}: eval")
        else:
            raise PipelineError(f"{where}: key 'eval': expected a mapping of evaluation settings or false")
        stages.append(Stage(name, kind, options, stage_eval, refs))
    return Pipeline(path, out, stages, eval_raw)


# --- the manifest


def read_manifest(out: Path) -> dict:
    path = out / MANIFEST
    if not path.is_file():
        return {"stages": {}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise PipelineError(f"{path}: not valid JSON (delete it to start the pipeline afresh)") from None


def write_manifest(out: Path, manifest: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / MANIFEST, manifest)


def fingerprint(stage: Stage, fingerprints: dict[str, str]) -> str:
    """A hash of what determines a stage's output: its type, its options and its inputs' fingerprints."""
    options = {k: (f"@{fingerprints.get(stage.refs[k][0], '?')}.{stage.refs[k][1]}" if k in stage.refs else v)
               for k, v in sorted(stage.options.items())}
    blob = json.dumps({"type": stage.type, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def eval_fingerprint(stage: Stage) -> str:
    """A hash of a stage's evaluation settings: changing them re-evaluates the stage without retraining it."""
    return hashlib.sha256(json.dumps(stage.eval, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _output_options(stage: Stage, stage_dir: Path, resume: bool) -> dict:
    stype = STAGE_TYPES[stage.type]
    if not stype.output_dir:
        return {}
    return {"output_dir": str(stage_dir), **({"resume": resume} if stype.resumable else {})}


def _evaluate_stage(stage: Stage, config: Any, entry: dict, stage_dir: Path, log: Callable[[str], None]) -> None:
    """Evaluate a stage's model (when it has one and evaluation is on) into its manifest entry."""
    entry.pop("eval", None)
    entry["eval_fingerprint"] = eval_fingerprint(stage)
    if stage.eval is None or "model" not in entry["artifacts"]:
        return
    plan = eval_plan(stage, config)
    t0 = time.perf_counter()
    summary = run_eval(entry["artifacts"]["model"], plan, stage_dir / "eval")
    entry["eval"] = {**{k: v for k, v in summary.items() if not isinstance(v, dict)}, "style": plan["style"]}
    entry["eval_seconds"] = round(time.perf_counter() - t0, 1)
    k = plan["num_samples"]
    log(f"r1kit pipeline: {stage.name}: pass@1 {summary['pass@1']:.3f}, cons@{k} {summary[f'cons@{k}']:.3f}, "
        f"format {summary['format_rate']:.2f} ({plan['benchmark']}, {plan['style']} style)")


def dependents(p: Pipeline, name: str) -> list[str]:
    """The stages that read `name`'s artifacts, directly or through other stages."""
    found: set[str] = {name}
    for stage in p.stages:
        if any(target in found for target, _ in stage.refs.values()):
            found.add(stage.name)
    return [s.name for s in p.stages if s.name in found and s.name != name]


def _artifacts_exist(entry: dict) -> bool:
    return all(Path(p).exists() for p in entry.get("artifacts", {}).values())


def resolve_options(p: Pipeline, stage: Stage, manifest: dict) -> dict:
    """The stage's options with references replaced by the earlier stages' artifacts (which must exist)."""
    values = dict(stage.options)
    order = {s.name: i for i, s in enumerate(p.stages)}
    # the earliest missing stage is the one to run first
    for key, (target, artifact) in sorted(stage.refs.items(), key=lambda kv: order[kv[1][0]]):
        entry = manifest["stages"].get(target)
        path = (entry or {}).get("artifacts", {}).get(artifact)
        if entry is None or entry.get("status") != "done" or path is None or not Path(path).exists():
            missing = f" ({path} is missing)" if path else ""
            raise PipelineError(f"stage '{stage.name}' needs the {artifact} of stage '{target}', which has not run"
                                f"{missing}; run it first: r1kit pipeline {p.path} --from {target}")
        values[key] = path
    return values


# --- evaluation after each stage


def eval_plan(stage: Stage, config: Any) -> dict:
    """The evaluation settings of a stage, with style/template/prefill taken from the stage when it has them."""
    ev = build_dataclass(EvalSettings, [("eval", stage.eval or {})])
    plan = dataclasses.asdict(ev)
    if ev.style == "auto":
        template = getattr(config, "template", None)
        prefill = getattr(config, "prefill", None)
        if template is None:
            plan["style"] = "readable"
        elif template == "r1zero" and "<think>" in (prefill or ""):
            plan.update(style="r1zero", prefill=prefill)
        else:
            plan.update(style="readable", template=template, prefill=prefill or "")
        plan["special_token"] = getattr(config, "special_token", ev.special_token)
    return plan


def run_eval(model_dir: str, plan: dict, out_dir: Path) -> dict:
    """Evaluate one model; writes out_dir/{summary.json,samples.jsonl,table.txt} and returns the summary."""
    import torch

    from r1kit.evaluation.benchmarks import held_out_problems
    from r1kit.evaluation.evaluate import evaluate, write_outputs
    from r1kit.models.loading import load_model, load_tokenizer

    problems = held_out_problems(plan["benchmark"], plan["limit"], plan["seed"], plan["data_dir"],
                                 arithmetic_terms=plan["arithmetic_terms"],
                                 arithmetic_max_value=plan["arithmetic_max_value"], arithmetic_ops=plan["arithmetic_ops"])
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir).to("cuda" if torch.cuda.is_available() else "cpu").eval()
    from tqdm.auto import tqdm

    with tqdm(total=len(problems), desc=f"eval {out_dir.parent.name}", unit="problem", leave=False) as bar:
        summary, records = evaluate(model, tokenizer, problems, num_samples=plan["num_samples"],
                                    temperature=plan["temperature"], top_p=plan["top_p"],
                                    max_new_tokens=plan["max_new_tokens"], prompt_style=plan["style"],
                                    prefill=plan["prefill"], batch_size=plan["batch_size"], seed=plan["seed"],
                                    template=plan["template"], special_token=plan["special_token"],
                                    progress=bar.update)
    write_outputs(out_dir, plan["benchmark"], summary, records, plan)
    return summary


# --- running


def run_pipeline(path: str | Path, start_from: str | None = None, output_dir: str | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Run (or continue) a pipeline; returns the manifest. See the module docstring for the rules."""
    p = load_pipeline(path, output_dir)
    names = [s.name for s in p.stages]
    if start_from is not None and start_from not in names:
        raise PipelineError(f"--from {start_from}: no such stage in {p.path}; stages: {', '.join(names)}")
    if p.output_dir.exists() and not p.output_dir.is_dir():
        raise PipelineError(f"output_dir {p.output_dir} is a file; choose a folder")
    with FolderLock.acquire(p.output_dir, "the pipeline's output_dir"):  # one pipeline in a folder at a time
        return _run_stages(p, names, start_from, log)


def _run_stages(p: Pipeline, names: list[str], start_from: str | None, log: Callable[[str], None]) -> dict:
    out = p.output_dir
    manifest = read_manifest(out)
    manifest["config"] = str(p.path)
    manifest["output_dir"] = str(out)
    manifest.setdefault("stages", {})
    fingerprints: dict[str, str] = {}
    rerun_from = names.index(start_from) if start_from is not None else len(names)
    for i, stage in enumerate(p.stages):
        fp = fingerprint(stage, fingerprints)
        fingerprints[stage.name] = fp
        entry = manifest["stages"].get(stage.name)
        stage_dir = out / stage.name
        tag = f"r1kit pipeline: [{i + 1}/{len(names)}] {stage.name} ({stage.type})"
        done = entry and entry.get("status") == "done" and entry.get("fingerprint") == fp and _artifacts_exist(entry)
        if i < rerun_from and done:
            if entry.get("eval_fingerprint") == eval_fingerprint(stage):
                log(f"{tag}: done, skipped")
            else:  # only the evaluation settings changed, or the evaluation did not finish
                log(f"{tag}: done; evaluating")
                config = make_stage_config(stage.type, {**resolve_options(p, stage, manifest),
                                                        **_output_options(stage, stage_dir, False)}, str(p.path))
                _evaluate_stage(stage, config, entry, stage_dir, log)
                write_manifest(out, manifest)
            continue
        if start_from is not None and i < rerun_from:
            # --from never runs earlier stages; a later stage that needs this one's output says so
            log(f"{tag}: not done, not run (--from {start_from})")
            continue
        stype = STAGE_TYPES[stage.type]
        values = resolve_options(p, stage, manifest)
        resume = (i < rerun_from and stype.resumable and entry is not None and entry.get("status") == "running"
                  and entry.get("fingerprint") == fp and (stage_dir / "metrics.jsonl").exists())
        if not resume:
            shutil.rmtree(stage_dir, ignore_errors=True)
        stage_dir.mkdir(parents=True, exist_ok=True)
        config = make_stage_config(stage.type, {**values, **_output_options(stage, stage_dir, resume)},
                                   f"{p.path}: stage '{stage.name}'")
        manifest["stages"][stage.name] = {"type": stage.type, "status": "running", "fingerprint": fp,
                                          "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        # the stages that read this one's output (directly or not) no longer describe it
        for later in dependents(p, stage.name):
            if manifest["stages"].get(later, {}).get("status") == "done":
                manifest["stages"][later]["status"] = "stale"
        write_manifest(out, manifest)
        log(tag + (": resuming" if resume else ""))
        t0 = time.perf_counter()
        artifacts, _ = stype.run(config, stage_dir)
        entry = {"type": stage.type, "status": "done", "fingerprint": fp, "artifacts": artifacts,
                 "seconds": round(time.perf_counter() - t0, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        manifest["stages"][stage.name] = entry
        write_manifest(out, manifest)  # done before the evaluation: a failed evaluation does not retrain
        _evaluate_stage(stage, config, entry, stage_dir, log)
        write_manifest(out, manifest)
    for gone in [n for n in manifest["stages"] if n not in names]:
        del manifest["stages"][gone]  # a stage removed from the config
    write_manifest(out, manifest)
    write_summary(p, manifest, log)
    return manifest


def summary_rows(p: Pipeline, manifest: dict) -> list[dict]:
    rows = []
    for stage in p.stages:
        entry = manifest["stages"].get(stage.name, {})
        ev = entry.get("eval") or {}
        k = ev.get("samples_per_problem")
        rows.append({"stage": stage.name, "type": stage.type, "status": entry.get("status", "not run"),
                     "pass@1": ev.get("pass@1"), "cons@k": ev.get(f"cons@{k}") if k else None, "k": k,
                     "format_rate": ev.get("format_rate"), "mean_length": ev.get("mean_length"),
                     "style": ev.get("style"), "seconds": entry.get("seconds"),
                     "eval_seconds": entry.get("eval_seconds")})
    return rows


def format_summary(p: Pipeline, rows: list[dict]) -> str:
    """A Markdown table: evaluation after every stage, side by side."""
    bench = build_dataclass(EvalSettings, [("eval", p.eval)])
    f = lambda x, d=3: "-" if x is None else f"{x:.{d}f}"  # noqa: E731
    lines = [f"Evaluation after each stage: {bench.benchmark}, first {bench.limit} problems, "
             f"k={bench.num_samples} samples, temperature {bench.temperature}, top-p {bench.top_p}", "",
             "| stage | type | pass@1 | cons@k | format | mean length | style | stage time (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['type']} | {f(r['pass@1'])} | {f(r['cons@k'])} | {f(r['format_rate'], 2)} "
                     f"| {f(r['mean_length'], 1)} | {r['style'] or '-'} | {f(r['seconds'], 0)} |")
    total = sum((r["seconds"] or 0) + (r["eval_seconds"] or 0) for r in rows)
    lines += ["", f"Total stage and evaluation time: {total:.0f} s"]
    return "\n".join(lines)


def write_summary(p: Pipeline, manifest: dict, log: Callable[[str], None] = print) -> str:
    rows = summary_rows(p, manifest)
    text = format_summary(p, rows)
    write_atomic(p.output_dir / "summary.md", text + "\n")
    write_json(p.output_dir / "summary.json", rows)
    log(text)
    return text
