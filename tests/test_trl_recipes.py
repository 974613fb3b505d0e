"""TRL and open-r1 recipes run as their users run them: recipe files with open-r1's keys and value types
(tests/data/open_r1, written for these tests) and TRL's flag names give the same config through
`r1kit grpo --config` and through `make_config`; the table of TRL keys (RECIPE_KEYS) and the table of defaults
that differ from TRL's (TRL_DEFAULTS) are walked against r1kit's options and against TRL 1.16's own fields and
defaults (tests/data/trl/trl_1.16_fields.json, written from an installed trl by tests/data/trl/make_fields.py),
so none can drift."""

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

from r1kit.algorithms.corrections import IMPORTANCE_SAMPLING_MODES
from r1kit.cli.main import build_parser, stage_config
from r1kit.core.errors import ConfigError
from r1kit.core.options import DTYPES
from r1kit.data.templates import chat_messages
from r1kit.rollout.options import ENGINES
from r1kit.trainers.grpo.config import GRPOConfig, make_config
from r1kit.trainers.grpo.recipes import _SAME, RECIPE_KEYS, TRL_DEFAULTS, _Not
from tests.conftest import run_cli

DATA = Path(__file__).parent / "data"
OPEN_R1 = DATA / "open_r1"
DEMO = OPEN_R1 / "math_recipe.yaml"
TRL_RECIPE = DATA / "trl" / "grpo_recipe.yaml"
TRL_REWARD = f"{DATA / 'trl' / 'rewards.py'}:accuracy_reward"
TRL_FIELDS = json.loads((DATA / "trl" / "trl_1.16_fields.json").read_text())
FIELDS = {f.name: f for f in dataclasses.fields(GRPOConfig)}
DEFAULTS = {n: f.default if f.default is not dataclasses.MISSING else f.default_factory() for n, f in FIELDS.items()}
# the keys open-r1 adds to TRL's (its GRPOConfig, GRPOScriptArguments and ScriptArguments in
# src/open_r1/configs.py): open-r1 is not a package one can install, so the names are listed here
OPEN_R1_KEYS = {
    "benchmarks", "callbacks", "chat_template", "code_eval_scoring_mode", "code_eval_test_batch_size",
    "code_language", "code_provider", "cosine_max_len", "cosine_max_value_correct", "cosine_max_value_wrong",
    "cosine_min_value_correct", "cosine_min_value_wrong", "dataset_mixture", "dataset_name",
    "dataset_prompt_column", "e2b_router_url", "hub_model_revision", "ioi_provider", "max_completion_len",
    "morph_router_url", "num_completions_to_print", "overwrite_hub_revision", "parallel_code_exec_per_proc",
    "push_to_hub_revision", "repetition_max_penalty", "repetition_n_grams", "reward_funcs", "soft_punish_cache",
    "system_prompt", "wandb_entity", "wandb_log_unique_prompts", "wandb_project", "wandb_run_group",
}
HAS_VLLM = __import__("importlib").util.find_spec("vllm") is not None
# a CPU user's additions to an open-r1 recipe: no vLLM, no W&B account, fp32 weights
ON_THIS_MACHINE = {"use_vllm": False, "report_to": ["none"], "torch_dtype": "float32"}
ON_THIS_MACHINE_FLAGS = ["--use_vllm", "false", "--report_to", "none", "--torch_dtype", "float32"]

# names the table keeps from TRL and transformers versions before 1.16 / 5.x (recipes still carry them)
OLDER_NAMES = {"torch_dtype": "TRL ModelConfig < 0.20", "use_liger_loss": "TRL < 0.20", "vllm_device": "TRL < 0.16",
               "dataset_configs": "open-r1 before its dataset_config", "evaluation_strategy": "transformers < 4.46",
               "num_processes": "TRL's CLI launcher", "accelerate_config": "TRL's CLI launcher",
               "datasets": "TRL's DatasetMixtureConfig"}
# shared names whose defaults differ only in spelling: the same behaviour
SAME_MEANING = {"scale_rewards": "True is TRL's 'group'", "report_to": "[] is TRL's 'none'",
                "eval_steps": "0 and TRL's None both mean no evaluation during training",
                "vllm_server_host": "127.0.0.1 and TRL's 0.0.0.0 both reach a server on this machine"}


def trl_defaults() -> dict:
    """TRL 1.16's default of every field of the configuration `trl grpo` reads."""
    out = {}
    for cls in ("GRPOConfig", "ModelConfig", "ScriptArguments", "GRPOScriptArguments"):
        out.update(TRL_FIELDS[cls])
    return out


def cli_config(*argv: str) -> GRPOConfig:
    return stage_config(build_parser().parse_args(["grpo", *argv]))


# --- the tables ---------------------------------------------------------------------------------------------


def test_the_key_table_covers_every_name_of_trl_and_open_r1_and_no_option():
    # the names TRL itself declares (not those it inherits from transformers' TrainingArguments) and open-r1's
    trl_names = set().union(TRL_FIELDS["declared_by_trl"], *(TRL_FIELDS[c] for c in ("ModelConfig", "ScriptArguments",
                                                                                  "GRPOScriptArguments")), OPEN_R1_KEYS)
    missing = sorted(n for n in trl_names if n not in FIELDS and n not in RECIPE_KEYS)
    assert not missing, f"TRL / open-r1 names neither an option nor a row of RECIPE_KEYS: {missing}"
    stale = sorted(k for k in RECIPE_KEYS if k in FIELDS)
    assert not stale, f"rows of RECIPE_KEYS that are r1kit options (their values would be refused): {stale}"
    known = trl_names | set(TRL_FIELDS["GRPOConfig"]) | set(OLDER_NAMES)
    assert not sorted(set(RECIPE_KEYS) - known), "rows for names TRL, transformers and open-r1 do not have"
    for key, row in RECIPE_KEYS.items():
        assert row.option is None or row.option in FIELDS, (key, row.option)
        assert row.kind in ("alias", "accepted", "without effect", "refused"), key
        assert row.describe(), key


# every value each alias target accepts (its table), or one value of its type
ACCEPTED = {"dtype": DTYPES, "importance_sampling_mode": IMPORTANCE_SAMPLING_MODES, "rollout_engine": ENGINES,
            "use_lora": (True, False), "model": ("some/model",), "dataset": ("my.jsonl",), "dataset_split": ("test",),
            "question_field": ("problem",)}


@pytest.mark.parametrize("key", sorted(k for k, row in RECIPE_KEYS.items() if row.option and row.values is None))
def test_an_alias_passes_every_value_its_option_accepts_in_yaml_python_and_on_the_command_line(key, tmp_path):
    option = RECIPE_KEYS[key].option
    for value in ACCEPTED[option]:
        if option == "rollout_engine" and value == "vllm" and not HAS_VLLM:
            continue
        recipe = tmp_path / "r.yaml"
        recipe.write_text(json.dumps({key: value}))  # JSON is YAML
        flag = ["--" + key] + ([] if value is True else [str(value)])
        if value is False:
            flag = ["--" + key, "false"]
        got = [getattr(c, option) for c in (make_config(recipe), make_config(overrides={key: value}), cli_config(*flag))]
        assert got == [value] * 3, (key, value, got)


@pytest.mark.parametrize("key", sorted(k for k, row in RECIPE_KEYS.items() if row.values is not None))
def test_a_keyed_alias_maps_each_of_its_values_and_refuses_the_rest(key):
    row = RECIPE_KEYS[key]
    for value, mapped in row.values.items():
        if mapped == "vllm" and not HAS_VLLM:
            continue
        c = make_config(overrides={key: value})
        if mapped is _SAME or isinstance(mapped, _Not):
            assert getattr(c, row.option) == DEFAULTS[row.option]
        else:
            assert getattr(c, row.option) == mapped, (key, value)
    with pytest.raises(ConfigError, match=f"command line: not supported by r1kit: '{key}: surely'"):
        make_config(overrides={key: "surely"})


def test_accepted_keys_take_their_values_and_refuse_others_in_one_line():
    for key, row in RECIPE_KEYS.items():
        if row.kind == "accepted":
            make_config(overrides={key: row.accepts[0]})
        if row.kind in ("accepted", "refused"):
            with pytest.raises(ConfigError) as err:
                make_config(overrides={key: "something else"})
            assert str(err.value).startswith(f"command line: not supported by r1kit: '{key}: something else' (")
            assert "\n" not in str(err.value)


def test_a_later_source_undoes_an_earlier_use_vllm_and_a_clash_in_one_source_is_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("use_vllm: true\nvllm_importance_sampling_correction: false\n")
    c = make_config(recipe, {"use_vllm": False, "vllm_importance_sampling_correction": True})
    assert (c.rollout_engine, c.importance_sampling_cap) == ("auto", None)  # back to r1kit's default: auto
    recipe.write_text("use_vllm: false\nrollout_engine: hf\nvllm_importance_sampling_correction: true\n"
                      "vllm_importance_sampling_clip_max: 2\n")
    assert (make_config(recipe).rollout_engine, make_config(recipe).importance_sampling_cap) == ("hf", 2.0)
    recipe.write_text("bf16: true\ndtype: float32\n")
    with pytest.raises(ConfigError, match=r"r.yaml: 'bf16: True' means dtype 'bfloat16', but dtype is 'float32'"):
        make_config(recipe)


def test_the_defaults_table_holds_every_default_that_differs_from_trl_1_16():
    trl = trl_defaults()
    for name, ours in DEFAULTS.items():
        if name in trl and trl[name] != ours and name not in SAME_MEANING:
            assert name in TRL_DEFAULTS, f"{name}: r1kit {ours!r}, TRL {trl[name]!r}, not in TRL_DEFAULTS"
    for name, row in TRL_DEFAULTS.items():
        if name in trl:
            assert row.trl == trl[name], (name, row.trl, trl[name])  # the table says TRL's value right
        if name in DEFAULTS:
            assert DEFAULTS[name] != row.trl, name  # and it does differ
    docs = (Path(__file__).parents[1] / "docs" / "trl.md").read_text()
    for name in [*TRL_DEFAULTS, *RECIPE_KEYS]:
        assert f"`{name}`" in docs, f"docs/trl.md does not mention {name}"


def test_the_recorded_trl_fields_are_those_of_the_trl_installed_here():
    """Where trl is installed, the record the tables are walked against is what make_fields.py writes from it."""
    trl = pytest.importorskip("trl")
    if trl.__version__ != TRL_FIELDS["versions"]["trl"]:
        pytest.skip(f"trl {trl.__version__} installed, the record is of {TRL_FIELDS['versions']['trl']}")
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fields", DATA / "trl" / "make_fields.py")
    make_fields = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_fields)
    from trl import GRPOConfig as TRLConfig
    from trl import ModelConfig

    recorded = json.loads(json.dumps(make_fields.defaults(TRLConfig), default=str))
    assert set(recorded) == set(TRL_FIELDS["GRPOConfig"])
    assert {k: v for k, v in recorded.items() if k in TRL_FIELDS["declared_by_trl"]} == \
        {k: v for k, v in TRL_FIELDS["GRPOConfig"].items() if k in TRL_FIELDS["declared_by_trl"]}
    assert set(make_fields.defaults(ModelConfig)) == set(TRL_FIELDS["ModelConfig"])


# --- open-r1's recipes, as their users run them -------------------------------------------------------------


def test_an_open_r1_recipe_gives_the_same_config_through_the_cli_and_python_and_says_so_once(capfd):
    from_cli = cli_config("--config", str(DEMO), *ON_THIS_MACHINE_FLAGS)
    cli_err = capfd.readouterr().err
    from_python = make_config(DEMO, ON_THIS_MACHINE)
    assert from_cli == from_python
    assert capfd.readouterr().err == cli_err  # the same notices, printed once each
    lines = cli_err.splitlines()
    assert len(lines) == 3, cli_err
    assert "recipe keys without effect in r1kit: " in lines[0] and "push_to_hub" in lines[0]
    assert "a TRL recipe: prompts are rendered with the chat template" in lines[1]
    for said in ("beta=0.001 (TRL: 0.0", "loss_type='grpo' (TRL: dapo", "stop_strings=['</answer>'] (TRL: none"):
        assert said in lines[1], said
    assert "lr_scheduler_type" not in lines[1]  # the recipe sets it: TRL's default does not matter
    assert lines[2].startswith("r1kit: reward_funcs: accuracy, format, tag_count run r1kit's rewards")
    c = from_cli
    got = {k: getattr(c, k) for k in ("model", "dataset", "question_field", "dtype", "rollout_engine", "template",
                                      "learning_rate", "lr_scheduler_type", "max_steps", "num_train_epochs",
                                      "save_steps", "num_generations", "gradient_accumulation_steps", "reward_funcs",
                                      "reward_weights", "warmup_ratio", "max_prompt_length")}
    assert got == {"model": "Qwen/Qwen2.5-0.5B-Instruct", "dataset": "open-r1/OpenR1-Math-220k",
                   "question_field": "problem", "dtype": "float32", "rollout_engine": "auto", "template": "chat",
                   "learning_rate": 3e-6, "lr_scheduler_type": "cosine", "max_steps": -1, "num_train_epochs": 1.0,
                   "save_steps": 0, "num_generations": 8, "gradient_accumulation_steps": 2,
                   "reward_funcs": ["accuracy", "format", "tag_count"], "reward_weights": [1.0, 0.5, 0.5],
                   "warmup_ratio": 0.05, "max_prompt_length": 256}
    # open-r1 renders system + user through the chat template: the recipe's system_prompt is the system turn
    assert chat_messages("What is 2 + 2?", c.template, None, c.system_prompt) == [
        {"role": "system", "content": c.system_prompt}, {"role": "user", "content": "What is 2 + 2?"}]
    assert c.system_prompt.startswith("Reason step by step inside <think>\n...\n</think>, then")


def test_r1kit_zero_reads_a_recipe_as_r1kit_grpo_does():
    argv = ["--config", str(DEMO), *ON_THIS_MACHINE_FLAGS]
    assert stage_config(build_parser().parse_args(["zero", *argv])) == cli_config(*argv)


def test_a_recipe_without_system_prompt_renders_the_user_turn_alone_and_template_stays_overridable(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: some/model\n")
    c = make_config(recipe)
    assert (c.template, c.system_prompt) == ("chat", "")
    assert chat_messages("Hi", c.template, None, c.system_prompt) == [{"role": "user", "content": "Hi"}]
    assert make_config(recipe, {"template": "r1zero"}).template == "r1zero"
    capsys.readouterr()
    plain = tmp_path / "plain.yaml"
    plain.write_text("learning_rate: 1e-6\n")  # TRL's names only where r1kit has them: not a recipe
    assert make_config(plain).template == "r1zero" and make_config(plain).system_prompt is None
    assert "a TRL recipe" not in capsys.readouterr().err


def test_a_trl_cli_recipe_gives_the_same_config_through_the_cli_and_python(tmp_path):
    from_cli = cli_config("--config", str(TRL_RECIPE), "--reward_funcs", TRL_REWARD)
    assert from_cli == make_config(TRL_RECIPE, {"reward_funcs": [TRL_REWARD]})
    assert (from_cli.model, from_cli.dataset, from_cli.template, from_cli.system_prompt) == \
        ("HuggingFaceTB/SmolLM2-360M-Instruct", "trl-lib/DeepMath-103K", "chat", "")
    # as written, the recipe names TRL's accuracy_reward: without trl installed, one line says where it is
    proc = run_cli("grpo", "--config", str(TRL_RECIPE), "--output_dir", str(tmp_path / "o"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "reward 'accuracy_reward' is TRL's trl.rewards.accuracy_reward, which cannot be imported here" in lines[0]
    # with TRL's launcher setting, one line says how r1kit launches several processes
    launch = tmp_path / "launch.yaml"
    launch.write_text(TRL_RECIPE.read_text() + "num_processes: 4\n")
    proc = run_cli("grpo", "--config", str(launch), "--output_dir", str(tmp_path))
    assert proc.returncode == 2 and "'num_processes: 4' (launch with `accelerate launch --num_processes N" in proc.stderr


def test_a_trl_reward_name_runs_trls_function_where_trl_is_installed(tmp_path):
    import subprocess
    import sys

    (tmp_path / "trl").mkdir()  # trl.rewards as TRL installs it, holding TRL's own functions
    (tmp_path / "trl" / "__init__.py").write_text("")
    shutil.copy(DATA / "trl" / "rewards.py", tmp_path / "trl" / "rewards.py")
    code = ("from r1kit.trainers.grpo.config import make_config\n"
            "from r1kit.rewards.scoring import score_completions\n"
            f"c = make_config({str(TRL_RECIPE)!r})\n"
            "_, per, _ = score_completions(c.reward_funcs, None, [r'So \\boxed{3}'], ['x'], "
            "prompts=[[{'role': 'user', 'content': 'q'}]], columns={'solution': ['3']})\n"
            "print(per)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "{'accuracy_reward': [1.0]}"


@pytest.mark.parametrize("name,start", [
    ("distill_recipe.yaml", f"{OPEN_R1 / 'distill_recipe.yaml'}: not supported by r1kit: 'lr_scheduler_kwargs: "
                            "{'min_lr_rate': 0.05}' (r1kit takes no scheduler arguments"),
    ("code_recipe.yaml", "reward_funcs: reward 'code' is open-r1's open_r1.rewards.code_reward, which cannot be "
                         "imported here"),
])
def test_open_r1_recipes_r1kit_cannot_run_stop_in_one_line_naming_the_file_or_key(name, start, tmp_path):
    proc = run_cli("grpo", "--config", str(OPEN_R1 / name), *ON_THIS_MACHINE_FLAGS, "--output_dir", str(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"r1kit: error: {start}"), lines[0]
    assert not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_use_vllm_without_vllm_is_one_line_before_any_model_loads(tmp_path):
    for args in (["--config", str(DEMO), "--report_to", "none"], ["--rollout_engine", "vllm"], ["--use_vllm"]):
        proc = run_cli("grpo", *args, "--model", str(tmp_path / "never-loaded"), "--output_dir", str(tmp_path / "o"))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[-1].startswith("r1kit: error: rollout_engine=vllm (TRL: use_vllm): vLLM is not installed"), args


def test_a_missing_tracker_is_one_line_at_configuration_time(tmp_path):
    (tmp_path / "wandb").mkdir()  # a wandb that cannot be imported, as on a machine without it
    (tmp_path / "wandb" / "__init__.py").write_text("raise ImportError('No module named wandb')\n")
    env_path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "r1kit.cli", "grpo", "--config", str(DEMO), "--use_vllm", "false",
                           "--model", str(tmp_path / "never-loaded"), "--output_dir", str(tmp_path / "o")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": env_path}, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[-1].startswith("r1kit: error: ") and "wandb" in lines[-1]


def test_trl_flag_names_on_the_command_line_without_a_file():
    c = cli_config("--model_name_or_path", "some/model", "--dataset_name", "my.parquet", "--dataset_train_split",
                   "test", "--bf16", "--use_peft", "true", "--log_completions", "false", "--save_strategy", "no",
                   "--vllm_importance_sampling_correction", "false", "--dataset-prompt-column", "problem")
    assert (c.model, c.dataset, c.dataset_split, c.dtype, c.use_lora, c.log_completions_steps, c.save_steps,
            c.importance_sampling_cap, c.question_field, c.template) == \
        ("some/model", "my.parquet", "test", "bfloat16", True, 0, 0, 0.0, "problem", "chat")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["grpo", "--bf16", "maybe"])


# --- an open-r1 recipe and open-r1's own rewards, trained on ------------------------------------------------


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory, tiny_model):
    """The tiny model with a chat template, as an instruct model has one."""
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("chat") / "model"
    shutil.copytree(tiny_model, path)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    tok.save_pretrained(path)
    return str(path)


def math_parquet(path: Path) -> str:
    """Problems as OpenR1-Math-220k holds them: problem, solution (LaTeX) and answer columns."""
    import datasets

    rows = {"problem": ["What is $2+3$?", "What is $4+4$?"], "solution": ["$5$", "$8$"], "answer": ["5", "8"]}
    datasets.Dataset.from_dict(rows).to_parquet(str(path))
    return str(path)


def test_an_open_r1_recipe_trains_with_open_r1_rewards_getting_message_completions(tmp_path, chat_model):
    rewards = OPEN_R1 / "rewards.py"
    out = tmp_path / "run"
    proc = run_cli("grpo", "--config", str(DEMO), *ON_THIS_MACHINE_FLAGS, "--model_name_or_path", chat_model,
                   "--dataset_name", math_parquet(tmp_path / "math.parquet"), "--output_dir", str(out),
                   "--reward_funcs", f"{rewards}:accuracy_reward", f"{rewards}:format_reward",
                   f"{rewards}:tag_count_reward", "--num_generations", "2", "--per_device_train_batch_size", "4",
                   "--gradient_accumulation_steps", "1", "--max_completion_length", "8", "--max_steps", "1",
                   "--no-write-report", "--log_completions", "false")
    assert proc.returncode == 0, proc.stderr
    import importlib.util

    spec = importlib.util.spec_from_file_location("open_r1_rewards", rewards)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gold = {"What is $2+3$?": "$5$", "What is $4+4$?": "$8$"}
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4
    for s in samples:  # each score is the open-r1 function called as TRL calls it
        as_trl = [[{"role": "assistant", "content": s["completion"]}]]
        assert s["rewards"]["tag_count_reward"] == module.tag_count_reward(as_trl)[0]
        assert s["rewards"]["format_reward"] == module.format_reward(as_trl)[0]
        expected = module.accuracy_reward(as_trl, [gold[s["question"]]])[0]
        assert s["rewards"].get("accuracy_reward") == expected  # None: not scored, as TRL leaves it out
    assert (out / "reward_failures.jsonl").read_text() == ""


# --- a rollout engine whose weights differ from the policy's ------------------------------------------------


@pytest.mark.parametrize("rollout_dtype,cap,line,corrected", [
    ("bfloat16", None, "samples with bfloat16 weights, the policy trains in float32: off-policy, corrected by "
                       "importance_sampling_cap=3 (token_truncate; 0 turns it off)", True),
    ("bfloat16", 0.0, "samples with bfloat16 weights, the policy trains in float32: off-policy and uncorrected "
                      "(importance_sampling_cap: 0)", False),
    ("auto", None, "samples with float32 weights, the policy trains in float32: on-policy", False),
])
def test_the_correction_is_on_by_default_when_the_engine_samples_from_other_weights(rollout_dtype, cap, line, corrected,
                                                                                     tmp_path, tiny_model, capsys):
    from r1kit.trainers.grpo.trainer import train

    c = make_config(overrides=dict(model=tiny_model, rollout_dtype=rollout_dtype, importance_sampling_cap=cap,
                                   num_generations=2, per_device_train_batch_size=4, max_completion_length=6,
                                   max_steps=1, write_report=False, log_completions_steps=0, torch_threads=1,
                                   output_dir=str(tmp_path / "run")))
    (metrics,) = train(c, show_progress=False)
    printed = [x for x in capsys.readouterr().out.splitlines() if x.startswith("r1kit: rollout engine")]
    assert printed == [f"r1kit: rollout engine fused {line}"]
    assert ("importance_weight" in metrics) == corrected


def test_an_engine_with_its_own_kernels_samples_off_policy_in_any_dtype():
    import torch

    from r1kit.rollout.engines import samples_off_policy

    class VLLMLike:
        own_kernels, dtype = True, torch.float32

    class Same:
        dtype = torch.float32

    assert samples_off_policy(VLLMLike(), torch.float32) and not samples_off_policy(Same(), torch.float32)
    assert samples_off_policy(Same(), torch.bfloat16) and not samples_off_policy(object(), torch.bfloat16)


def test_async_rollouts_one_step_behind_are_corrected_by_default_and_said_so():
    import torch

    from r1kit.trainers.grpo.setup import rollout_correction

    class Engine:  # a generation worker in the policy's dtype
        dtype = torch.float32

    lines = []
    run = type("Run", (), {"write": staticmethod(lines.append)})
    assert rollout_correction(make_config(overrides={"async_rollout": True}), run, Engine(), torch.float32) == 3.0
    assert rollout_correction(make_config(overrides={"async_rollout": True, "importance_sampling_cap": 0}), run,
                              Engine(), torch.float32) == 0.0
    assert rollout_correction(make_config(), run, Engine(), torch.float32) == 0.0
    assert [x.split(": ", 1)[1] for x in lines] == [
        "rollout engine Engine samples with float32 weights one step behind, the policy trains in float32: off-policy, "
        "corrected by importance_sampling_cap=3 (token_truncate; 0 turns it off)",
        "rollout engine Engine samples with float32 weights one step behind, the policy trains in float32: off-policy "
        "and uncorrected (importance_sampling_cap: 0)",
        "rollout engine Engine samples with float32 weights, the policy trains in float32: on-policy"]
