"""How trl_1.16_fields.json was made (not run by the tests): the field names and defaults of TRL 1.16.0's
GRPO configuration classes, read from its source, and of transformers' TrainingArguments (which TRL's
configs extend), plus the names open-r1 adds (huggingface/open-r1 src/open_r1/configs.py at commit
1416fa0cf21595d2083b399a2a0bbddd7f6e9563). Both projects are Apache-2.0; only names and default values
are recorded.

    pip download --no-deps trl==1.16.0 && unzip trl-1.16.0-py3-none-any.whl -d trl_src
    python tests/data/trl/make_fields.py trl_src path/to/open-r1/src/open_r1/configs.py
"""

import ast
import dataclasses
import json
import sys
from pathlib import Path

CLASSES = {"trl/trainer/grpo_config.py": "GRPOConfig", "trl/trainer/base_config.py": "_BaseConfig",
           "trl/trainer/model_config.py": "ModelConfig", "trl/scripts/utils.py": "ScriptArguments",
           "trl/scripts/grpo.py": "GRPOScriptArguments"}


def class_fields(path: Path, name: str) -> dict:
    """{field: default} of one dataclass, defaults read as literals (their source text otherwise)."""
    tree = ast.parse(path.read_text())
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name)
    out = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            default = None
            call = node.value
            if isinstance(call, ast.Call):
                for kw in call.keywords:
                    if kw.arg == "default":
                        try:
                            default = ast.literal_eval(kw.value)
                        except ValueError:
                            default = ast.unparse(kw.value)
            out[node.target.id] = default
    return out


def main(trl_src: str, open_r1_configs: str) -> None:
    from transformers import TrainingArguments

    fields = {f.name: (f.default if f.default is not dataclasses.MISSING else None)
              for f in dataclasses.fields(TrainingArguments) if f.init}
    record = {"TrainingArguments": {k: v for k, v in fields.items() if isinstance(v, (str, int, float, bool, type(None)))}}
    for file, name in CLASSES.items():
        record[name] = class_fields(Path(trl_src) / file, name)
    tree = ast.parse(Path(open_r1_configs).read_text())
    record["open_r1"] = sorted({n.target.id for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                                and c.name in ("GRPOConfig", "GRPOScriptArguments", "ScriptArguments")
                                for n in c.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)})
    out = Path(__file__).with_name("trl_1.16_fields.json")
    out.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
