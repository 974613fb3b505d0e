"""Test fixture written for r1kit: rewards in the shape of TRL's ready-made ones (`trl.rewards`), standing in for
them where trl is not installed (the tests place this file as `trl/rewards.py`).

What it mirrors is TRL 1.16's convention, not its code:
- `accuracy_reward(completions, solution, log_extra=None, **kwargs)`: messages-shaped completions
  (`completion[0]["content"]`), the gold answer from the `solution` column, `None` for a sample whose gold
  answer does not parse, and the trainer's `log_extra(column, values)` called with the columns `solution`,
  `gold_parsed` and `answer_parsed` when given (None when the function is called directly);
- `think_format_reward(completions, **kwargs)`: 1.0 when the completion opens with one `<think>` block that is
  closed, 0.0 otherwise.
"""

import re

from math_verify import parse, verify

BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")  # one level of inner braces, as in \frac{1}{3}
ONE_THINK = re.compile(r"<think>(?:(?!<think>).)*?</think>(?:(?!<think>).)*", re.DOTALL)


def accuracy_reward(completions, solution, log_extra=None, **kwargs):
    scores, golds, answers = [], [], []
    for completion, gold_text in zip(completions, solution, strict=True):
        gold = parse(gold_text)
        if not gold:
            scores.append(None)
            golds.append("[unparseable]")
            answers.append("[skipped]")
            continue
        boxed = BOXED.findall(completion[0]["content"])
        answer = parse(f"${boxed[-1]}$") if boxed else []
        scores.append(float(bool(answer) and verify(gold, answer)))
        golds.append(str(gold))
        answers.append(str(answer) if answer else "[unparseable]")
    if log_extra is not None:
        log_extra("solution", list(solution))
        log_extra("gold_parsed", golds)
        log_extra("answer_parsed", answers)
    return scores


def think_format_reward(completions, **kwargs):
    return [1.0 if ONE_THINK.fullmatch(c[0]["content"]) else 0.0 for c in completions]
