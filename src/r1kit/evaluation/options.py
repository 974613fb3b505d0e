"""The options of evaluating on a held-out set during training (the paper's Figure 2 curve)."""

from __future__ import annotations

from dataclasses import dataclass

from r1kit.core.options import Options, need, need_choice, opt


@dataclass
class EvalOptions(Options):
    """evaluation during training"""

    eval_steps: int = opt(0, "evaluate on a held-out set at step 0, every N steps and at the end (0: never)")
    eval_benchmark: str = opt("gsm8k", "gsm8k, math500, aime24, aime25, amc23, a .jsonl, or 'arithmetic' (held-out "
                                       "synthetic)")
    eval_limit: int = opt(50, "problems in the held-out set (the first N)")
    eval_num_samples: int = opt(4, "k samples per problem for pass@1 and cons@k")
    eval_max_new_tokens: int | None = opt(None, "default: max_completion_length")
    eval_temperature: float = opt(0.6, "sampling temperature for evaluation (paper: 0.6)")
    eval_top_p: float = opt(0.95, "top-p for evaluation (paper: 0.95)")
    eval_style: str = opt("auto", "how evaluation prompts and reads answers: auto (as the training template asks: "
                                  "r1zero, r1chat, fewshot for plain), or readable (the training template and "
                                  "prefill, the answer from R1's readable format; after cold-start SFT)")
    eval_think_gain: bool = opt(True, "also sample the held-out set with the think removed (the response starts "
                                      "with an empty think): eval/pass@1_no_think and eval/think_gain = pass@1 - "
                                      "pass@1_no_think say whether the think does the work")

    def check(self) -> None:
        need(self.eval_steps >= 0 and self.eval_limit >= 1 and self.eval_num_samples >= 1,
             "eval_steps must be >= 0, eval_limit and eval_num_samples >= 1")
        need_choice("eval_style", self.eval_style, ("auto", "readable"))
