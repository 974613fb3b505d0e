"""The command line's parser manners: no abbreviated options, booleans spelt as TRL spells them, and a bad
command line answered in one line.

- argparse takes `--learning_rat 1e-5` for `--learning_rate 1e-5` unless told not to; r1kit never guesses
  an option (`allow_abbrev=False` on every parser and subparser).
- A boolean option takes `true` / `false` after it (`--use_vllm false`, `--bf16 true`, also `=false`; yes/no,
  on/off and 1/0 too) besides `--flag` and `--no-flag`. The words are rewritten into argparse's own
  spellings before parsing, so `--flag` followed by a positional argument still reads that argument as
  the positional.
- An error prints `r1kit: error: <what> (r1kit CMD --help for more)`: one line, not the 100-line usage.
"""

from __future__ import annotations

import argparse
import difflib
import sys

BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


class Parser(argparse.ArgumentParser):
    """argparse.ArgumentParser with r1kit's manners (see the module docstring); subparsers inherit them."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"r1kit: error: {message} ({self.prog} --help for more)\n")

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(spell_booleans(self, args), namespace)

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown option is named by the command it was given to, with the closest
        option it knows."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            command = next((a.choices.get(getattr(namespace, a.dest, None)) for a in self._actions
                            if isinstance(a, argparse._SubParsersAction)), None) or self
            unknown = extras[0]
            if not unknown.startswith("-"):
                command.error(f"unrecognized arguments: {' '.join(extras)}")
            close = difflib.get_close_matches(unknown.partition("=")[0], command._option_string_actions, n=1, cutoff=0.75)
            command.error(f"unknown option {unknown}" + (f" (did you mean {close[0]}?)" if close else ""))
        return namespace


def spell_booleans(parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """`--flag WORD` and `--flag=WORD` for this parser's boolean options (argparse.BooleanOptionalAction) as
    `--flag` or `--no-flag`; a word that is not true or false is an error, unless the parser takes
    positional arguments (then the word is one of them)."""
    negation = {}
    for action in parser._actions:
        if isinstance(action, argparse.BooleanOptionalAction):
            no = next(o for o in action.option_strings if o.startswith("--no-"))
            negation.update({o: no for o in action.option_strings if not o.startswith("--no-")})
    if not negation:
        return args
    takes_positionals = any(not a.option_strings for a in parser._actions)
    out, i = [], 0
    while i < len(args):
        token = args[i]
        if token == "--":
            return out + args[i:]
        name, eq, word = token.partition("=")
        if name in negation:
            following = args[i + 1] if i + 1 < len(args) else None
            if not eq and following is not None and not following.startswith("-"):
                if following.lower() in BOOL_WORDS or not takes_positionals:
                    eq, word, i = "=", following, i + 1
            if eq:
                if word.lower() not in BOOL_WORDS:
                    parser.error(f"argument {name}: expected true or false, got {word!r}")
                token = name if BOOL_WORDS[word.lower()] else negation[name]
        out.append(token)
        i += 1
    return out


def without_flag(args: list[str], name: str) -> list[str]:
    """`args` without boolean option `name` in any spelling (--name, --no-name, --name true, --name=false)."""
    spellings = {f"--{n}" for n in (name, name.replace("_", "-"))}
    out, i = [], 0
    while i < len(args):
        flag = args[i].partition("=")[0]
        if flag in spellings or flag in {f"--no-{s[2:]}" for s in spellings}:
            i += 2 if "=" not in args[i] and i + 1 < len(args) and args[i + 1].lower() in BOOL_WORDS else 1
            continue
        out.append(args[i])
        i += 1
    return out
