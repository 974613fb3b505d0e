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
  benchmark, k samples, temperature 0.6, top-p 0.95 by default), each in its own output format, with the
  think and with it removed, and on each `extra_evals` set (r1kit.pipeline.evaluation); the final summary
  puts all stages side by side (summary.md, summary.json, summary.png: r1kit.pipeline.summary).
- `--seeds 0 1 2` runs the whole pipeline once per seed, in OUTPUT_DIR/seed<N>, with that seed given to
  every stage that has the option and to every evaluation; OUTPUT_DIR/summary.* then hold the seeds'
  mean, spread and each seed's value. Each seed's run is an ordinary pipeline run (resumable, --from),
  and the seeds' summary is rewritten after each one from every seed folder that has finished, so seeds
  can run in separate processes side by side.
- Stages train full weights: a LoRA stage would leave an adapter that the next stage cannot load as a
  model, so `use_lora` is rejected here (it works in the stand-alone commands).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from r1kit.core.errors import ConfigError, PipelineError
from r1kit.core.files import write_json
from r1kit.core.lock import FolderLock
from r1kit.core.options import read_yaml
from r1kit.pipeline.evaluation import check_local_benchmark, eval_settings, evaluate_stage, parse_extra_evals
from r1kit.pipeline.stages import ARTIFACTS, STAGE_TYPES, config_class, make_stage_config
from r1kit.pipeline.summary import summary_rows, write_run_summary, write_seed_summary

MANIFEST = "manifest.json"


RESERVED = ("name", "type", "eval")


@dataclass
class Stage:
    name: str
    type: str
    options: dict[str, Any]  # as written, references unresolved
    eval: dict[str, Any] | None  # None: not evaluated
    refs: dict[str, tuple[str, str]]  # option -> (stage, artifact)
    extra_evals: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> settings over `eval`


@dataclass
class Pipeline:
    path: Path
    output_dir: Path
    stages: list[Stage]
    eval: dict[str, Any]
    seed: int | None = None  # `--seeds`: this run's seed (output_dir is then the seeds' folder / seed<N>)
    seeds_dir: Path | None = None  # the folder the seeds' summary goes to
    extra_names: list[str] = field(default_factory=list)  # the extra held-out sets, in config order


def _parse_ref(value: Any) -> tuple[str, str | None] | None:
    if not isinstance(value, str) or not value.startswith("@"):
        return None
    name, _, artifact = value[1:].partition(".")
    return name, artifact or None


def _local_paths(values: dict, base: Path) -> dict:
    """Relative file paths made relative to the config file (the way compose files work), so a pipeline
    runs from any working directory."""
    out = dict(values)
    for key, value in values.items():
        if isinstance(value, str) and value.endswith((".jsonl", ".json", ".yaml")) and not Path(value).is_absolute() \
                and (base / value).exists():
            out[key] = str((base / value).resolve())
    return out


def _stage_refs(options: dict, stages: list[Stage], where: str) -> dict[str, tuple[str, str]]:
    """option -> (earlier stage, artifact) for every "@stage[.artifact]" value."""
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
    return refs


def _read_stage(st: Any, i: int, stages: list[Stage], path: Path, out: Path, defaults: dict, eval_raw: dict,
                extras: dict[str, tuple[dict, list[str] | None]]) -> Stage:
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
    options = _local_paths(options, path.parent)
    refs = _stage_refs(options, stages, where)
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
        return Stage(name, kind, options, None, refs)
    if not isinstance(ev, dict):
        raise PipelineError(f"{where}: key 'eval': expected a mapping of evaluation settings or false")
    stage_eval = {**eval_raw, **_local_paths(ev, path.parent)}
    eval_settings(stage_eval, f"{where}: eval")
    if ev:
        check_local_benchmark(stage_eval, f"{where}: eval")
    stage_extras = {x: settings for x, (settings, only) in extras.items() if only is None or name in only}
    return Stage(name, kind, options, stage_eval, refs, stage_extras)


TOP_LEVEL = ("output_dir", "eval", "extra_evals", "defaults", "stages")


def load_pipeline(path: str | Path, output_dir: str | None = None, seed: int | None = None) -> Pipeline:
    """Read and check a pipeline config: every stage's options, references and evaluation settings.

    With `seed`, every stage whose config has a seed (unless it sets its own) and every evaluation sample
    with it, and the run goes to OUTPUT_DIR/seed<N>."""
    path = Path(path)
    raw = read_yaml(path)
    unknown = set(raw) - set(TOP_LEVEL)
    if unknown:
        raise PipelineError(f"{path}: unknown top-level key '{sorted(unknown)[0]}' (expected {', '.join(TOP_LEVEL)})")
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise PipelineError(f"{path}: 'stages' must be a non-empty list of stages")
    defaults = raw.get("defaults") or {}
    eval_raw = raw.get("eval") or {}
    if not isinstance(defaults, dict) or not isinstance(eval_raw, dict):
        raise PipelineError(f"{path}: 'defaults' and 'eval' must be mappings")
    if seed is not None:
        defaults, eval_raw = {**defaults, "seed": seed}, {**eval_raw, "seed": seed}
    eval_raw = _local_paths(eval_raw, path.parent)
    eval_settings(eval_raw, f"{path}: eval")
    check_local_benchmark(eval_raw, f"{path}: eval")
    extras_raw = raw.get("extra_evals")
    if isinstance(extras_raw, dict):
        extras_raw = {x: _local_paths(v, path.parent) if isinstance(v, dict) else v for x, v in extras_raw.items()}
    extras = parse_extra_evals(extras_raw, eval_raw, path)
    seeds_dir = Path(output_dir or raw.get("output_dir") or f"runs/{path.stem}")
    out = seeds_dir / f"seed{seed}" if seed is not None else seeds_dir
    stages: list[Stage] = []
    for i, st in enumerate(stages_raw, 1):
        stages.append(_read_stage(st, i, stages, path, out, defaults, eval_raw, extras))
    for x, (_, only) in extras.items():
        missing = sorted(set(only or ()) - {s.name for s in stages})
        if missing:
            raise PipelineError(f"{path}: extra_evals '{x}': key 'stages': no stage named '{missing[0]}'")
    return Pipeline(path, out, stages, eval_raw, seed, seeds_dir if seed is not None else None, list(extras))


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
    blob = json.dumps([stage.eval, stage.extra_evals if stage.eval is not None else None], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _output_options(stage: Stage, stage_dir: Path, resume: bool) -> dict:
    stype = STAGE_TYPES[stage.type]
    if not stype.output_dir:
        return {}
    return {"output_dir": str(stage_dir), **({"resume": resume} if stype.resumable else {})}


def _evaluate_stage(stage: Stage, config: Any, entry: dict, stage_dir: Path, log: Callable[[str], None]) -> None:
    """Evaluate a stage's model (when it has one and evaluation is on) into its manifest entry."""
    entry["eval_fingerprint"] = eval_fingerprint(stage)
    evaluate_stage(stage.name, stage.eval, stage.extra_evals, config, entry, stage_dir, log)


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


# --- running


def run_pipeline(path: str | Path, start_from: str | None = None, output_dir: str | None = None,
                 log: Callable[[str], None] = print, seed: int | None = None) -> dict:
    """Run (or continue) a pipeline; returns the manifest. See the module docstring for the rules."""
    p = load_pipeline(path, output_dir, seed)
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


def run_seeds(path: str | Path, seeds: list[int], start_from: str | None = None, output_dir: str | None = None,
              log: Callable[[str], None] = print) -> dict[int, dict]:
    """Run the pipeline once per seed (OUTPUT_DIR/seed<N>); returns the manifests by seed."""
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise PipelineError(f"--seeds {' '.join(map(str, seeds))}: seeds must be distinct and >= 0")
    return {seed: run_pipeline(path, start_from, output_dir, log, seed) for seed in seeds}


def summary_header(p: Pipeline) -> str:
    ev = eval_settings(p.eval, "eval")
    lines = [f"Evaluation after each stage: {ev.benchmark}, {ev.limit} problems x k={ev.num_samples} samples, "
             f"temperature {ev.temperature}, top-p {ev.top_p}; pass@{ev.num_samples} is the unbiased pass@k; "
             f"think_gain = pass@1 - pass@1 with the think removed; think tokens and length are means per sample; "
             f"format is the share in the stage's format; language is the think's language consistency."]
    for x in p.extra_names:
        stage = next((s for s in p.stages if x in s.extra_evals), None)
        if stage is not None:
            xe = eval_settings({**stage.eval, **stage.extra_evals[x]}, x)
            only = [s.name for s in p.stages if x in s.extra_evals]
            lines.append(f"Extra held-out set '{x}': {xe.benchmark}, {xe.limit} problems x k={xe.num_samples} "
                         f"(stages: {', '.join(only)}).")
    return "\n".join(lines)


def write_summary(p: Pipeline, manifest: dict, log: Callable[[str], None] = print) -> str:
    """summary.md, summary.json and summary.png of this run; with a seed, also the seeds' summary one
    folder up, over every seed that has finished."""
    rows = summary_rows([(s.name, s.type) for s in p.stages], manifest)
    header = summary_header(p)
    text = write_run_summary(p.output_dir, header, rows, p.extra_names, p.path.stem, log)
    if p.seeds_dir is not None:
        write_seed_summary(p.seeds_dir, header, p.extra_names, p.path.stem, log)
    return text
