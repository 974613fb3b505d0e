"""Which task makes the model's think do the work? Held-out pass@1 with the think and with it removed.

    python bench/think_candidates.py --tasks add1,add3,add4,muladd --variants demo,shot1 --n 64 --k 4

For each task (a problem generator) and prompt variant, r1kit.evaluate samples k completions per problem at
temperature 0.6 (top-p 0.95) as the model writes them, and k more with the think removed (the response
starts with an empty think, "<think>\\n</think>\\n<answer>"), and prints pass@1 with and without the think,
think_gain, the share of thinks the model closed and their mean length. One JSON line per row goes to
--out. A task fits the demo when the starting model's think_gain is clearly positive and pass@1 leaves room
to grow (docs/learning.md has the measured table).

Variants: demo (the chat template with r1kit's R1 system prompt, "<think>" prefilled), r1zero (the paper's
template), exT (the system prompt also shows one worked example of the task), shot1 (that worked example
as an earlier turn of the conversation: prompt_examples).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from r1kit.data.problems import Problem
from r1kit.data.templates import R1_CHAT_SYSTEM
from r1kit.evaluation.evaluate import evaluate
from r1kit.models.loading import load_model, load_tokenizer


def _sums(terms: int):
    return lambda rng: _expr(" + ".join(str(rng.randint(1, 9)) for _ in range(terms)))


def _expr(expr: str) -> tuple[str, int]:
    return f"What is {expr}?", eval(expr)  # digits, spaces and + - * only


def _muladd(rng) -> tuple[str, int]:
    return _expr(f"{rng.randint(2, 9)} * {rng.randint(2, 9)} + {rng.randint(1, 9)}")


def _addsub(rng) -> tuple[str, int]:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return _expr(f"{a} + {b} - {rng.randint(1, min(9, a + b))}")


def _carry(rng) -> tuple[str, int]:
    while True:
        a, b = rng.randint(10, 89), rng.randint(1, 9)
        if a % 10 + b >= 10:
            return _expr(f"{a} + {b}")


# task: (make one problem from a random.Random, a worked example (question, think, answer) of the task)
TASKS = {
    "add1": (_sums(2), ("What is 4 + 7?", "4 + 7 = 11", "11")),
    "add3": (_sums(3), ("What is 2 + 5 + 4?", "2 + 5 = 7, 7 + 4 = 11", "11")),
    "add4": (_sums(4), ("What is 2 + 5 + 4 + 3?", "2 + 5 = 7, 7 + 4 = 11, 11 + 3 = 14", "14")),
    "mul11": (lambda rng: _expr(f"{rng.randint(2, 9)} * {rng.randint(2, 9)}"), ("What is 3 * 4?", "3 * 4 = 12", "12")),
    "muladd": (_muladd, ("What is 3 * 4 + 5?", "3 * 4 = 12, 12 + 5 = 17", "17")),
    "addsub": (_addsub, ("What is 6 + 5 - 3?", "6 + 5 = 11, 11 - 3 = 8", "8")),
    "add21c": (_carry, ("What is 47 + 8?", "7 + 8 = 15, carry 1; 4 + 1 = 5; so 55", "55")),
}


def problems(task: str, n: int, seed: int = 1234) -> list[Problem]:
    """n distinct problems of a task, its worked example's question left out."""
    make, (example, _, _) = TASKS[task]
    rng, seen = random.Random(seed), {example}
    out = []
    while len(out) < n:
        question, answer = make(rng)
        if question not in seen:
            seen.add(question)
            out.append(Problem(question, str(answer), f"{task}-{len(out)}"))
    return out


def prompt_setting(task: str, variant: str) -> dict:
    """The evaluate() keywords of a prompt variant."""
    question, think, answer = TASKS[task][1]
    response = f"<think> {think} </think> <answer> {answer} </answer>"
    if variant == "r1zero":
        return {"prompt_style": "r1zero"}
    if variant == "exT":
        return {"prompt_style": "r1chat",
                "system_prompt": f'{R1_CHAT_SYSTEM} For example, to the question "{question}" you reply: {response}'}
    if variant == "shot1":
        return {"prompt_style": "r1chat", "examples": ((question, response),)}
    return {"prompt_style": "r1chat"}  # demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="add1,add3")
    parser.add_argument("--variants", default="demo,shot1")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max_new_tokens", type=int, default=96)
    parser.add_argument("--out", default="runs/think_candidates.jsonl")
    args = parser.parse_args()
    tokenizer, model = load_tokenizer("embedded"), load_model("embedded")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    print("task | variant | pass@1 with think | think removed | think_gain | think closed | think tokens | seconds")
    for task in args.tasks.split(","):
        for variant in args.variants.split(","):
            summary, _ = evaluate(model, tokenizer, problems(task, args.n), num_samples=args.k, temperature=0.6,
                                  top_p=0.95, max_new_tokens=args.max_new_tokens, prefill="<think>",
                                  **prompt_setting(task, variant))
            row = {"task": task, "variant": variant, "n": args.n, "k": args.k,
                   **{k: summary[k] for k in ("pass@1", "pass@1_no_think", "think_gain", "think_closed_rate",
                                              "think_tokens", "seconds")}}
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{task} | {variant} | {row['pass@1']:.3f} | {row['pass@1_no_think']:.3f} | {row['think_gain']:+.3f} | "
                  f"{row['think_closed_rate']:.2f} | {row['think_tokens']:.0f} | {row['seconds']:.0f}", flush=True)


if __name__ == "__main__":
    main()
