"""The `r1kit` command line.

    r1kit grpo  [--config FILE.yaml] [--option value ...]   GRPO from any model (alias: r1kit zero)
    r1kit eval  --model M --benchmark gsm8k math500 ...      pass@1 over k samples, pass@k, cons@k
    r1kit model [NAME]                                      resolve a model; converts the embedded one once
    r1kit report RUN_DIR [RUN_DIR ...]                      HTML report: plots, aha-moment tracker, samples
    r1kit chat  [MODEL] [--template r1zero|chat]            ask a model questions, thinking and answer streamed
  the R1 pipeline (each stage also runs alone; `r1kit pipeline` chains them):
    r1kit sft       [--config FILE.yaml] [--option value ...]  SFT on prompt/response JSONL, loss on the response
    r1kit coldstart [--config FILE.yaml] [--option value ...]  cold-start long-CoT data in R1's readable format
    r1kit rejection [--config FILE.yaml] [--option value ...]  rejection sampling from a checkpoint into SFT data
    r1kit rm        [--config FILE.yaml] [--option value ...]  train a reward model (Bradley-Terry on pairs)
    r1kit student   MODEL OUT --num_layers N                   a smaller student: N evenly spaced layers kept
    r1kit pipeline  CONFIG.yaml [--from STAGE] [--seeds N ...]  the stages as a declarative list, resumable
    r1kit distill-compare [--option value ...]                  the paper's Table 6 at small scale

Every training option is a field of GRPOConfig and appears here as --field_name or --field-name
(booleans also as --no-field_name / --no-field-name, or followed by true / false as TRL writes them; options
are never abbreviated, see cli/parsing.py); a config file is read first and command-line options override it. Expected failures
(bad options, missing files, bad data, a failing reward under reward_failure=abort) print one line
`r1kit: error: ...` and exit 2; a run that cannot go on (repeated NaN updates, a checkpoint that cannot be
written) prints one line and exits 1; SIGINT/SIGTERM save a checkpoint and exit 0 with the --resume hint.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from r1kit.cli.parsing import Parser, without_flag
from r1kit.core.errors import ConfigError, DataError, ModelError, RewardError, TrainingError, TrainingStopped
from r1kit.core.options import load_config
from r1kit.data.templates import TEMPLATES
from r1kit.evaluation.evaluate import PROMPT_STYLES
from r1kit.models.options import PRM_AGGREGATIONS
from r1kit.pipeline.stages import config_class, stage_commands
from r1kit.trainers.grpo.config import GRPOConfig

EXPECTED_ERRORS = (ConfigError, DataError, ModelError, RewardError)


def _add_config_options(parser: argparse.ArgumentParser, cls: type = GRPOConfig) -> None:
    """One --option per field of the config dataclass `cls`, spelt --name_with_underscores or
    --name-with-dashes (TRL's parser takes both), shown under the option group that declares it; unset
    options stay absent so the config file's values stand."""
    groups: dict[type, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        owner = _declared_by(cls, f.name)
        if owner not in groups:
            doc = owner.__doc__ or ""
            own = owner is cls or doc.startswith(f"{owner.__name__}(")  # no docstring: dataclass's signature
            groups[owner] = parser.add_argument_group(f"{cls.__name__} options" if own else doc.strip())
        group = groups[owner]
        ftype, help_text = str(f.type), f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": f"{help_text} (default: {default})"}
        names = list(dict.fromkeys([f"--{f.name}", f"--{f.name.replace('_', '-')}"]))
        if ftype == "bool | str":  # --scale_rewards [VALUE] and --no-scale_rewards
            group.add_argument(*names, nargs="?", const=True, metavar="VALUE", **kw)
            group.add_argument(*[f"--no-{n[2:]}" for n in names], dest=f.name, action="store_const", const=False,
                               default=argparse.SUPPRESS, help=f"same as --{f.name} false")
            continue
        if ftype.startswith("bool"):
            group.add_argument(*names, action=argparse.BooleanOptionalAction, **kw)
            continue
        if ftype.startswith("list"):
            kw["nargs"] = "+"
            kw["type"] = float if "float" in ftype else str
        elif ftype.startswith("int"):
            kw["type"] = int
        elif ftype.startswith("float"):
            kw["type"] = float
        group.add_argument(*names, metavar=f.name.upper(), **kw)
    _add_recipe_keys(parser, getattr(cls, "recipe_keys", {}))


def _trl_bool(text: str) -> bool:
    """A boolean as TRL's parser reads one on the command line (true/false, yes/no, 1/0)."""
    word = text.strip().lower()
    if word in ("true", "yes", "y", "t", "1"):
        return True
    if word in ("false", "no", "n", "f", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _yaml_value(text: str) -> Any:
    """A mapping (or other structured value) given on the command line, read as the same YAML key would be."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"expected a YAML or JSON value, got {text!r}") from None


def _add_recipe_keys(parser: argparse.ArgumentParser, keys: dict) -> None:
    """TRL's and open-r1's names (trainers/grpo/recipes.RECIPE_KEYS) as --KEY VALUE, read like the same key in
    a YAML file and translated with it; --help lists the aliases, the others are described in docs/trl.md."""
    if not keys:
        return
    group = parser.add_argument_group("TRL / open-r1 names, translated as in a recipe file (docs/trl.md)")
    for key, row in keys.items():
        names = list(dict.fromkeys([f"--{key}", f"--{key.replace('_', '-')}"]))
        shown = row.describe() if row.kind == "alias" else argparse.SUPPRESS
        kw: dict[str, Any] = {"dest": key, "default": argparse.SUPPRESS, "help": shown}
        if row.type is bool:
            kw.update(nargs="?", const=True, type=_trl_bool, metavar="BOOL")
        elif row.type is list:
            kw.update(nargs="+", type=str, metavar="VALUE")
        else:
            kw.update(type=_yaml_value if row.type is dict else row.type, metavar="VALUE")
        group.add_argument(*names, **kw)


def _declared_by(cls: type, name: str) -> type:
    """The most basic class of `cls` that declares field `name` (its option group)."""
    return next(k for k in reversed(cls.__mro__) if name in k.__dict__.get("__annotations__", {}))


def _add_eval_parser(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate a model: pass@1 over k samples, pass@k, cons@k",
                        description="Evaluate as the R1 paper reports it: pass@1 averaged over k samples "
                                    "(temperature 0.6, top-p 0.95), the unbiased pass@k, and majority vote cons@k.")
    ev.add_argument("--model", default="embedded", help="local HF folder, cached hub id, or 'embedded'")
    ev.add_argument("--benchmark", nargs="+", required=True,
                    help="gsm8k, math500, aime24, aime25, amc23, or a data file, folder or cached hub dataset (several allowed)")
    ev.add_argument("--num_samples", "-k", type=int, default=4, help="k samples per problem (default 4)")
    ev.add_argument("--temperature", type=float, default=0.6, help="default 0.6, as in the paper")
    ev.add_argument("--top_p", type=float, default=0.95, help="default 0.95, as in the paper")
    ev.add_argument("--max_new_tokens", type=int, default=512)
    ev.add_argument("--prompt_style", default="r1zero", choices=list(PROMPT_STYLES),
                    help="r1zero (answer in <answer>), r1chat (chat template + R1 system prompt), chat (chat template "
                         "+ \\boxed{} instruction), fewshot (base models), readable (--template and --prefill as in "
                         "training, the answer from R1's readable format)")
    ev.add_argument("--prefill", default="<think>", help="response prefill for the r1zero, r1chat and readable styles")
    ev.add_argument("--template", default="plain", choices=list(TEMPLATES), help="prompt template of the readable style")
    ev.add_argument("--special_token", default="|special_token|", help="the readable format's separator")
    ev.add_argument("--system_prompt", "--system-prompt", default=None,
                    help="r1chat style: the system message (default: r1kit's R1 instruction)")
    ev.add_argument("--prompt_examples", "--prompt-examples", default=None,
                    help="r1chat style: a .jsonl of worked examples (question, response) shown before each question")
    ev.add_argument("--think_gain", "--think-gain", action=argparse.BooleanOptionalAction, default=True,
                    help="also sample each problem with the think removed: pass@1_no_think and think_gain "
                         "(pass@1 - pass@1_no_think) say whether the think does the work (default: on)")
    ev.add_argument("--limit", type=int, default=None, help="evaluate only this many problems")
    ev.add_argument("--subset", default="first", choices=["first", "random"], help="which problems --limit keeps")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--batch_size", type=int, default=8, help="problems per generation batch")
    ev.add_argument("--pass_k", type=int, nargs="*", default=None, help="also report pass@k for these k (default: k)")
    ev.add_argument("--data_dir", default=None, help="benchmark data folder (default $R1KIT_DATA_DIR or ../shared/data)")
    ev.add_argument("--question_field", default="question", help="question field of a .jsonl benchmark")
    ev.add_argument("--answer_field", default="answer", help="gold answer field of a .jsonl benchmark")
    ev.add_argument("--dataset_config", default=None, help="configuration of a folder or cached hub benchmark")
    ev.add_argument("--dataset_split", default="test", help="split of a folder, save_to_disk or cached hub benchmark")
    ev.add_argument("--output_dir", default="runs/eval", help="writes OUTPUT_DIR/BENCHMARK/{summary.json,samples.jsonl}")
    ev.add_argument("--trust_remote_code", action=argparse.BooleanOptionalAction, default=False)
    ev.add_argument("--prm", default=None, help="a process reward model (OUTPUT_DIR/model of `r1kit prm`): also "
                                                "report prm@k, the share of problems whose best-scored sample is correct")
    ev.add_argument("--prm_aggregation", default="min", choices=list(PRM_AGGREGATIONS),
                    help="a solution's PRM score from its steps' scores (default min, Math-Shepherd's)")
    ev.set_defaults(run=cmd_eval)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="r1kit", description="DeepSeek-R1 style reasoning RL (GRPO) for language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, stype in stage_commands().items():
        sp = sub.add_parser(name, aliases=list(stype.aliases), help=stype.command,
                            description=stype.description or stype.command)
        sp.add_argument("--config", help="YAML file of options (every option below is also one of its keys); "
                                         "command-line options override it")
        _add_config_options(sp, config_class(name))
        sp.set_defaults(run=cmd_stage, stage=name)
    _add_eval_parser(sub)
    st = sub.add_parser("student", help="cut a smaller student from a model: N evenly spaced decoder layers kept",
                        description="Make a distillation student by keeping num_layers evenly spaced decoder layers "
                                    "(first and last included) of a Llama-family model, weights copied.")
    st.add_argument("model", help="model folder, cached hub id or 'embedded'")
    st.add_argument("out", help="folder to write the student to")
    st.add_argument("--num_layers", type=int, required=True)
    st.set_defaults(run=cmd_student)
    _add_pipeline(sub)
    dc = sub.add_parser("distill-compare", help="Table 6 at small scale: distillation vs RL on the student, same prompts",
                        description="The paper's Table 6 experiment: a student distilled from a teacher's filtered "
                                    "outputs vs the same student trained with GRPO on the same prompts, both evaluated "
                                    "the same way. Writes a pipeline config and runs it (resumable).")
    from r1kit.pipeline.compare import add_compare_arguments, cmd_compare

    add_compare_arguments(dc)
    dc.set_defaults(run=cmd_compare)
    model = sub.add_parser("model", help="resolve a model name to a local folder (converts the embedded model once)")
    model.add_argument("name", nargs="?", default="embedded")
    model.set_defaults(run=cmd_model)
    rep = sub.add_parser("report", help="HTML report with plots, aha-moment tracker and sample browser of runs",
                         description="Write a self-contained HTML page and a PNG per plot from runs' metrics.jsonl "
                                     "and samples.jsonl; several runs are overlaid.")
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folder(s) holding metrics.jsonl")
    rep.add_argument("--out", default=None, help="a .html file or a folder (default: RUN_DIR/report/report.html; "
                                                 "for several runs ./r1kit_report/report.html); PNGs go next to it")
    rep.add_argument("--markers", nargs="+", default=None, help="reflection markers to track (replace the defaults)")
    rep.add_argument("--extra_markers", nargs="+", default=[], help="reflection markers added to the defaults")
    rep.add_argument("--steps", type=int, nargs="+", default=None, help="steps the sample browser offers "
                                                                        "(default: 12 spread over the run)")
    rep.add_argument("--max_samples_per_step", type=int, default=32, help="completions per step in the page")
    rep.set_defaults(run=cmd_report)
    chat = sub.add_parser("chat", help="ask a model questions; streams its thinking and answer",
                          description="Interactive prompt: each line is a question; the answer streams with the "
                                      "thinking and the answer shown apart. Ctrl-D, 'exit' or 'quit' leave.")
    chat.add_argument("model", nargs="?", default="embedded", help="checkpoint folder, cached hub id or 'embedded'")
    chat.add_argument("--template", default="r1zero", choices=["r1zero", "chat"],
                      help="r1zero (the paper's Table 1 template) or chat (the model's chat template)")
    chat.add_argument("--prefill", default="<think>", help="text the response is forced to start with")
    chat.add_argument("--temperature", type=float, default=0.6, help="0 for greedy (default 0.6, as in the paper)")
    chat.add_argument("--top_p", type=float, default=0.95)
    chat.add_argument("--max_new_tokens", type=int, default=512)
    chat.add_argument("--seed", type=int, default=None, help="seed the sampling (repeatable answers)")
    chat.add_argument("--trust_remote_code", action=argparse.BooleanOptionalAction, default=False)
    chat.set_defaults(run=cmd_chat)
    _add_vllm_serve(sub)
    for subparser in sub.choices.values():
        _accept_dashes(subparser)
    return parser


def _add_pipeline(sub) -> None:
    pl = sub.add_parser("pipeline", help="run the R1 pipeline stages of a config; finished stages are skipped",
                        description="Run the stages of a pipeline config in order. Each stage writes its artifacts to "
                                    "OUTPUT_DIR/STAGE and an entry in OUTPUT_DIR/manifest.json; a rerun skips finished "
                                    "stages and resumes an interrupted one; the summary shows every stage's evaluation.")
    pl.add_argument("config", help="pipeline YAML (see configs/pipeline_tiny.yaml)")
    pl.add_argument("--from", dest="start_from", metavar="STAGE", help="rerun this stage and all later ones from scratch")
    pl.add_argument("--output_dir", default=None, help="override the config's output_dir")
    pl.add_argument("--seeds", type=int, nargs="+", default=None, metavar="N",
                    help="run the whole pipeline once per seed, in OUTPUT_DIR/seed<N>; OUTPUT_DIR/summary.{md,json,png} "
                         "then hold the seeds' mean, spread and every seed's value")
    pl.set_defaults(run=cmd_pipeline)


def _add_vllm_serve(sub) -> None:
    vs = sub.add_parser("vllm-serve", help="a vLLM rollout server for rollout_engine=vllm, vllm_mode=server",
                        description="Holds the model in vLLM, answers the trainer's prompts over HTTP and takes its "
                                    "weights after every update through torch.distributed (gloo on CPU, NCCL on GPUs). "
                                    "Needs vLLM in this environment (CPU: .venv-vllm from setup.sh --vllm).")
    vs.add_argument("--model", default="embedded", help="the trainer's starting model: folder, cached hub id or 'embedded'")
    vs.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    vs.add_argument("--port", type=int, default=8000, help="HTTP port (the trainer's vllm_server_port)")
    vs.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    vs.add_argument("--max_model_len", type=int, default=2048, help="longest prompt + completion, in tokens")
    vs.add_argument("--gpu_memory_utilization", type=float, default=0.9,
                    help="share of the GPU's memory (on the CPU: of the RAM, for the KV cache)")
    vs.add_argument("--kv_cache_memory_bytes", type=int, default=0, help="KV cache size (0: from --gpu_memory_utilization)")
    vs.add_argument("--enforce_eager", action=argparse.BooleanOptionalAction, default=False, help="no torch.compile / CUDA graphs: starts in seconds")
    vs.add_argument("--seed", type=int, default=0)
    vs.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for a weight push")
    vs.set_defaults(run=cmd_vllm_serve)


def cmd_vllm_serve(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536 or args.max_model_len < 1 or not 0 < args.gpu_memory_utilization <= 1:
        raise ConfigError("--port must be in 1..65535, --max_model_len >= 1 and --gpu_memory_utilization in (0, 1]")
    from r1kit.models.loading import resolve_model_path
    from r1kit.rollout.vllm_engine import import_vllm
    from r1kit.rollout.vllm_server import serve

    try:
        import_vllm()
    except ImportError as err:
        raise ConfigError(f"vllm-serve: {err}") from None
    serve(resolve_model_path(args.model), host=args.host, port=args.port, dtype=args.dtype,
          gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=args.max_model_len, seed=args.seed,
          enforce_eager=args.enforce_eager, kv_cache_memory_bytes=args.kv_cache_memory_bytes, timeout=args.timeout)
    return 0


def _accept_dashes(parser: argparse.ArgumentParser) -> None:
    """Each --name_with_underscores option of a hand-written parser also as --name-with-dashes.

    argparse has no public way to add a spelling to an existing option, so the alias goes into the
    parser's option table directly (the same table add_argument fills); spellings already taken stay.
    """
    for action in list(parser._actions):
        for option in list(action.option_strings):
            dashed = "--" + option[2:].replace("_", "-")
            if option.startswith("--") and dashed not in parser._option_string_actions:
                action.option_strings.append(dashed)
                parser._option_string_actions[dashed] = action


def stage_config(args: argparse.Namespace) -> Any:
    """The config of `r1kit STAGE --config FILE --option value ...`: the file, then the command line, read the
    same way (TRL / open-r1 names included for GRPO) and validated; what make_config gives for the same."""
    cls = config_class(args.stage)
    names = {f.name for f in dataclasses.fields(cls)} | set(getattr(cls, "recipe_keys", {}))
    return load_config(cls, None, args.config, {k: v for k, v in vars(args).items() if k in names})


def cmd_stage(args: argparse.Namespace) -> int:
    """r1kit grpo / sft / coldstart / rejection / rm: build the stage's config and run it (r1kit.pipeline.stages)."""
    c = stage_config(args)
    _, account = stage_commands()[args.stage].run(c, Path(c.output_dir))
    if account:
        print(f"r1kit: {account}")
    return 0


def cmd_student(args: argparse.Namespace) -> int:
    from r1kit.models.loading import resolve_model_path
    from r1kit.pipeline.distill import make_student

    path = make_student(resolve_model_path(args.model), args.out, args.num_layers)
    print(f"r1kit: student with {args.num_layers} layers written to {path}")
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from r1kit.pipeline.pipeline import run_pipeline, run_seeds

    if args.seeds:
        manifests = run_seeds(args.config, args.seeds, start_from=args.start_from, output_dir=args.output_dir)
        seeds_dir = Path(next(iter(manifests.values()))["output_dir"]).parent
        print(f"r1kit: pipeline done for seeds {', '.join(map(str, manifests))}; summary.md and summary.png over "
              f"the seeds in {seeds_dir}")
        return 0
    manifest = run_pipeline(args.config, start_from=args.start_from, output_dir=args.output_dir)
    done = sum(e.get("status") == "done" for e in manifest["stages"].values())
    print(f"r1kit: pipeline done: {done} stages done; manifest.json, summary.md and summary.png in "
          f"{manifest['output_dir']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from r1kit.data.sources import read_examples
    from r1kit.evaluation.benchmarks import BENCHMARKS, load_benchmark, select_problems
    from r1kit.evaluation.evaluate import evaluate, format_table, write_outputs

    if args.num_samples < 1 or args.batch_size < 1:
        raise ConfigError("--num_samples and --batch_size must be >= 1")
    if not 0 < args.top_p <= 1 or args.temperature < 0:
        raise ConfigError("--top_p must be in (0, 1] and --temperature >= 0")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: must be >= 1 (leave it out to evaluate every problem)")
    bad_k = [k for k in args.pass_k or () if not 1 <= k <= args.num_samples]
    if bad_k:
        raise ConfigError(f"--pass_k {bad_k[0]}: pass@k needs 1 <= k <= the samples per problem "
                          f"(--num_samples/-k {args.num_samples})")
    if args.prompt_examples and args.prompt_style != "r1chat":
        raise ConfigError(f"--prompt_examples are shown as earlier chat turns: use --prompt_style r1chat, "
                          f"not {args.prompt_style}")
    examples = read_examples(args.prompt_examples) if args.prompt_examples else ()
    # every benchmark is read and checked before the model loads
    suites = {name: select_problems(load_benchmark(name, args.data_dir, args.question_field, args.answer_field,
                                                   args.dataset_config, args.dataset_split),
                                    args.limit, args.subset, args.seed)
              for name in args.benchmark}
    import torch
    from tqdm.auto import tqdm

    from r1kit.models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(args.model, args.trust_remote_code)
    model = load_model(args.model, trust_remote_code=args.trust_remote_code)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    prm = None
    if args.prm:
        from r1kit.evaluation.rerank import prm_rerank
        from r1kit.models.process_reward_model import load_process_reward_model

        prm = load_process_reward_model(args.prm, trust_remote_code=args.trust_remote_code)
    pass_k = tuple(args.pass_k) if args.pass_k is not None else (args.num_samples,)
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "benchmark")}
    for name, problems in suites.items():
        # outputs go to OUTPUT_DIR/LABEL: a file's or folder's name, a hub id with its "/" made "--"
        label = name if name in BENCHMARKS else Path(name).stem if Path(name).exists() or name.endswith(".jsonl") \
            else name.replace("/", "--")
        with tqdm(total=len(problems), desc=f"eval {label}", unit="problem") as bar:
            summary, records = evaluate(model, tokenizer, problems, num_samples=args.num_samples,
                                        temperature=args.temperature, top_p=args.top_p,
                                        max_new_tokens=args.max_new_tokens, prompt_style=args.prompt_style,
                                        prefill=args.prefill, batch_size=args.batch_size, seed=args.seed,
                                        template=args.template, special_token=args.special_token,
                                        pass_k=pass_k, system_prompt=args.system_prompt, examples=examples,
                                        think_gain=args.think_gain, progress=bar.update)
        if prm is not None:
            summary.update(prm_rerank(records, problems, prm, args.num_samples, args.prm_aggregation))
        write_outputs(Path(args.output_dir) / label, label, summary, records, settings)
        print(format_table(label, summary))
        print(f"  -> {Path(args.output_dir) / label}/summary.json, samples.jsonl")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from r1kit.models.loading import resolve_model_path

    print(resolve_model_path(args.name))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from r1kit.report.aha import DEFAULT_MARKERS, compile_markers
    from r1kit.report.html import write_report

    if args.max_samples_per_step < 1:
        raise ConfigError("--max_samples_per_step must be >= 1")
    markers = list(args.markers if args.markers is not None else DEFAULT_MARKERS) + list(args.extra_markers)
    try:
        compile_markers(markers)
    except ValueError as e:
        raise ConfigError(f"--markers: {e}") from None
    path = write_report(args.run_dirs, out=args.out, markers=markers, sample_steps=args.steps,
                        max_samples_per_step=args.max_samples_per_step)
    pngs = sorted(p.name for p in path.parent.glob("*.png"))
    print(f"r1kit: report written to {path} (plots: {', '.join(pngs)})")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1 or args.temperature < 0 or not 0 < args.top_p <= 1:
        raise ConfigError("--max_new_tokens must be >= 1, --temperature >= 0 and --top_p in (0, 1]")
    import torch
    from transformers.utils import logging as hf_logging

    from r1kit.cli.chat import chat_loop
    from r1kit.models.loading import load_model, load_tokenizer

    hf_logging.disable_progress_bar()  # a loading bar would land in the conversation
    tokenizer = load_tokenizer(args.model, args.trust_remote_code)
    if args.template == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"--template chat: model {args.model} has no chat template; use --template r1zero")
    model = load_model(args.model, trust_remote_code=args.trust_remote_code)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    print(f"r1kit chat: {args.model} (template {args.template}, prefill {args.prefill!r}); one question per line, "
          f"Ctrl-D or 'exit' to leave", file=sys.stderr)
    return chat_loop(model, tokenizer, template=args.template, prefill=args.prefill, temperature=args.temperature,
                     top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except EXPECTED_ERRORS as e:
        print(f"r1kit: error: {e}", file=sys.stderr)
        return 2
    except TrainingStopped as e:  # SIGINT/SIGTERM: the step was finished and a checkpoint saved
        if e.main_process:
            import os
            import shlex

            again = without_flag(sys.argv[1:] if argv is None else argv, "resume")
            if args.command == "pipeline":  # a rerun resumes the interrupted stage by itself
                again = [a for a in again if a != "--from" and a != getattr(args, "start_from", None)]
            else:
                again += ["--resume"]
            print(f"r1kit: {e}. To continue: r1kit {shlex.join(again)}"
                  f"{' (under accelerate launch: the same launch command with --resume)' if 'WORLD_SIZE' in os.environ else ''}")
        return 0
    except TrainingError as e:
        print(f"r1kit: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("r1kit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
