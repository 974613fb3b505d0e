"""Writes trl_1.16_fields.json (not run by the tests): the names and defaults of the fields of TRL's GRPO
configuration classes, read from an installed trl, so the tests can walk r1kit's key tables against them
without trl installed. Only names and default values are recorded. To remake it (trl needs no dependencies
beyond r1kit's own to be imported):

    pip install --no-deps --target /tmp/trl116 trl==1.16.0
    PYTHONPATH=/tmp/trl116 python tests/data/trl/make_fields.py
"""

import dataclasses
import json
from pathlib import Path


def defaults(cls) -> dict:
    """{field: default} of a dataclass, inherited fields included, as a user who sets nothing gets them."""
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None
    return out


def declared_outside(cls, base) -> list[str]:
    """The fields `cls` or a class between it and `base` declares (or declares again with its own default)."""
    names = set()
    for klass in cls.__mro__[: cls.__mro__.index(base)]:
        names |= set(vars(klass).get("__annotations__", {}))
    return sorted(names)


def main() -> None:
    import transformers
    import trl
    from trl import GRPOConfig, ModelConfig, ScriptArguments
    from trl.scripts.grpo import GRPOScriptArguments

    record = {
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__},
        "GRPOConfig": defaults(GRPOConfig),
        "declared_by_trl": declared_outside(GRPOConfig, transformers.TrainingArguments),
        "ModelConfig": defaults(ModelConfig),
        "ScriptArguments": defaults(ScriptArguments),
        "GRPOScriptArguments": defaults(GRPOScriptArguments),
    }
    out = Path(__file__).with_name(f"trl_{'.'.join(trl.__version__.split('.')[:2])}_fields.json")
    out.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


if __name__ == "__main__":
    main()
