"""The code's shape: role folders that import only downward, no import cycle among r1kit's modules (imports
inside functions count), no module below the trainers that imports a trainer or its config, no module over
500 lines, no function over 100, and the tables that several modules read (stages, schedulers, dtypes, loss
types, option groups)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_FUNCTION_LINES = 100
MAX_MODULE_LINES = 500
# the role folders, lowest first: a module imports only from its own folder or one listed before it
LAYERS = ("core", "data", "models", "rewards", "algorithms", "rollout", "evaluation", "report", "trainers",
          "pipeline", "cli")


def module_name(path: Path, root: Path) -> str:
    """`r1kit.trainers.grpo.config` for root/r1kit/config.py, `r1kit` for root/r1kit/__init__.py."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, package: str = "r1kit") -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports, at any depth of its code (inside functions too).

    `from X import name` counts as importing X.name when that is a module, else X. A module's parent
    packages, which Python initialises first, are not counted: otherwise every module would depend on
    the package's __init__ and so on everything it imports.
    """
    files = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the module's package, one level up per extra dot
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in files else source for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:  # `import r1kit.a.b` where only r1kit.a is ours
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(file:qualified name, lines) of every function or method longer than `limit` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))

        def walk(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    qualname = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        lines = child.end_lineno - child.lineno + 1
                        if lines > limit:
                            found.append((f"{path.relative_to(root)}:{qualname}", lines))
                    walk(child, qualname + ".")
                else:
                    walk(child, prefix)

        walk(tree, "")
    return found


def test_no_import_cycle_among_r1kit_modules():
    graph = import_graph(SRC)
    assert len(graph) > 20 and graph["r1kit.rewards.readable"], "the walker found r1kit's modules and their imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_walker_sees_imports_in_functions_and_relative_imports(tmp_path):
    pkg = tmp_path / "r1kit"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("from .sub import b\n\ndef f():\n    return b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def g():\n    from ..c import h\n    return h\n")
    (pkg / "c.py").write_text("import os\n\ndef h():\n    import r1kit.a.missing_attr\n")
    graph = import_graph(tmp_path)
    assert graph == {"r1kit": {"r1kit.a"}, "r1kit.a": {"r1kit.sub.b"}, "r1kit.sub": set(),
                     "r1kit.sub.b": {"r1kit.c"}, "r1kit.c": {"r1kit.a"}}
    assert find_cycle(graph) == ["r1kit.a", "r1kit.sub.b", "r1kit.c", "r1kit.a"]
    (pkg / "c.py").write_text("def h():\n    return 1\n")
    assert find_cycle(import_graph(tmp_path)) is None


def test_no_function_is_longer_than_100_lines():
    long = long_functions(SRC)
    assert not long, "functions over 100 lines: " + ", ".join(f"{name} ({n} lines)" for name, n in long)


def test_the_length_check_counts_methods_and_nested_functions(tmp_path):
    body = "".join(f"        x{i} = {i}\n" for i in range(100))
    (tmp_path / "m.py").write_text(f"class A:\n    def short(self):\n        pass\n\n    def long(self):\n{body}")
    assert long_functions(tmp_path) == [("m.py:A.long", 101)]


def test_no_module_is_longer_than_500_lines():
    long = {str(p.relative_to(SRC)): n for p in sorted((SRC / "r1kit").rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def layer_of(module: str) -> int | None:
    """The index in LAYERS of a module's role folder; None for the package's top (r1kit, its shims)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a role folder into a folder above it, as "importer -> imported"."""
    bad = []
    for name, deps in sorted(graph.items()):
        mine = layer_of(name)
        for dep in sorted(deps):
            theirs = layer_of(dep)
            if mine is not None and (theirs is None or theirs > mine):
                bad.append(f"{name} -> {dep}")
    return bad


def test_every_module_lives_in_a_role_folder_that_imports_only_downward():
    graph = import_graph(SRC)
    folders = {p.name for p in (SRC / "r1kit").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS), f"role folders {sorted(folders)} and LAYERS {LAYERS} differ"
    top = sorted(name for name in graph if layer_of(name) is None)
    assert top == ["r1kit", "r1kit.config", "r1kit.grpo", "r1kit.trainer"], top  # the public API and old paths
    assert not upward_imports(graph), "imports into a higher folder: " + "; ".join(upward_imports(graph))


def test_the_layer_check_sees_an_upward_import():
    graph = {"r1kit.rewards.functions": {"r1kit.trainers.grpo.config"}, "r1kit.trainers.sft": {"r1kit.core.errors"},
             "r1kit.core.files": {"r1kit"}}
    assert upward_imports(graph) == ["r1kit.core.files -> r1kit", "r1kit.rewards.functions -> r1kit.trainers.grpo.config"]


def test_no_module_below_the_trainers_imports_a_trainers_config():
    """Lower layers get narrow option groups (core.options), never GRPOConfig, SFTConfig or RMConfig."""
    configs = {"r1kit.trainers.grpo.config", "r1kit.trainers.sft", "r1kit.trainers.reward_model", "r1kit.config"}
    below = LAYERS.index("trainers")
    graph = import_graph(SRC)
    bad = [f"{name} -> {dep}" for name, deps in graph.items() for dep in deps & configs
           if layer_of(name) is not None and layer_of(name) < below]
    assert not bad, bad
    for path in (SRC / "r1kit").rglob("*.py"):  # nor names one in a signature or annotation
        layer = layer_of(module_name(path, SRC))
        if layer is not None and layer < below:
            text = path.read_text(encoding="utf-8")
            assert not any(cls in text for cls in ("GRPOConfig", "SFTConfig", "RMConfig")), path


def test_each_option_is_declared_once_in_the_trainer_configs():
    """A trainer config is its option groups and its own fields; a field it redeclares from a group only
    changes the default (the same type), so YAML, the command line and the groups read one option."""
    import dataclasses

    from r1kit.core.options import Options
    from r1kit.pipeline.mcts import MCTSConfig
    from r1kit.pipeline.prm_data import PRMDataConfig
    from r1kit.trainers.grpo.config import GRPOConfig
    from r1kit.trainers.prm import PRMConfig
    from r1kit.trainers.reward_model import RMConfig
    from r1kit.trainers.sft import SFTConfig

    for cls in (GRPOConfig, SFTConfig, RMConfig, PRMConfig, PRMDataConfig, MCTSConfig):
        groups = [base for base in cls.__mro__[1:] if issubclass(base, Options) and base is not Options]
        owner: dict[str, type] = {}
        for group in reversed(groups):
            for f in dataclasses.fields(group):
                owner.setdefault(f.name, group)
        for f in dataclasses.fields(cls):
            if f.name in owner:
                original = {g.name: g for g in dataclasses.fields(owner[f.name])}[f.name]
                assert str(original.type) == str(f.type) or (cls, f.name) == (SFTConfig, "num_train_epochs"), \
                    (cls.__name__, f.name, original.type, f.type)
        assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), f"{cls.__name__}: an option without help"


# --- the tables


def test_every_listed_scheduler_runs_with_the_arguments_r1kit_passes():
    from transformers import get_scheduler

    from r1kit.core.errors import ConfigError
    from r1kit.core.options import SCHEDULERS
    from r1kit.trainers.grpo.config import GRPOConfig
    from r1kit.trainers.reward_model import RMConfig
    from r1kit.trainers.sft import SFTConfig

    for cls in (GRPOConfig, SFTConfig, RMConfig):  # every trainer checks the option against the one table
        with pytest.raises(ConfigError) as err:
            cls(lr_scheduler_type="cosinus").validate()
        assert all(name in str(err.value) for name in SCHEDULERS)
    for name in SCHEDULERS:
        param = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.AdamW([param], lr=1e-3)
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=2, num_training_steps=10)
        for _ in range(10):
            optimizer.step()
            scheduler.step()
        lr = scheduler.get_last_lr()[0]
        assert 0 <= lr <= 1e-3, (name, lr)


@pytest.mark.parametrize("option,bad", [("lr_scheduler_type", "cosinus"), ("dtype", "fp8"), ("rollout_dtype", "fp8"),
                                        ("vllm_dtype", "fp8"), ("loss_type", "ppo"), ("template", "r1")])
def test_grpo_config_validates_choices_against_the_tables(option, bad):
    from r1kit.algorithms.losses import LOSS_TYPES
    from r1kit.core.errors import ConfigError
    from r1kit.core.options import DTYPES, SCHEDULERS
    from r1kit.data.templates import TEMPLATES
    from r1kit.trainers.grpo.config import make_config

    table = {"lr_scheduler_type": SCHEDULERS, "loss_type": LOSS_TYPES, "template": TEMPLATES}.get(option, DTYPES)
    for good in table:
        needs = {"epsilon_high": 5.0} if good == "cispo" else {}  # cispo's cap must be above 1
        assert getattr(make_config(overrides={option: good, **needs}), option) == good
    with pytest.raises(ConfigError) as err:
        make_config(overrides={option: bad})
    assert f"{option}={bad!r}" in str(err.value) and all(name in str(err.value) for name in table)


def test_every_dtype_but_auto_is_a_torch_dtype():
    from r1kit.core.options import DTYPES

    assert DTYPES[0] == "auto"
    assert all(isinstance(getattr(torch, name), torch.dtype) for name in DTYPES[1:])


def test_the_command_line_runs_each_stage_command_of_the_stage_table():
    import dataclasses

    from r1kit.cli.main import build_parser, cmd_stage
    from r1kit.pipeline.stages import STAGE_TYPES, config_class

    parser = build_parser()
    commands = [name for name, stype in STAGE_TYPES.items() if stype.command]
    assert {"grpo", "sft", "coldstart", "rejection", "rm", "prm_data", "prm", "mcts"} <= set(commands)
    for name in commands:
        for alias in (name, *STAGE_TYPES[name].aliases):
            option = next(f.name for f in dataclasses.fields(config_class(name)) if str(f.type) == "str")
            args = parser.parse_args([alias, f"--{option}", "x"])
            assert (args.run, args.stage, getattr(args, option)) == (cmd_stage, name, "x")
