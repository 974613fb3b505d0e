"""Tree search over solution steps with a model: the expansion and evaluation that the pure tree operations
(r1kit.algorithms.tree_search) leave to the caller, run for a batch of problems in lockstep so each
simulation is one batched generation.

Expanding a leaf samples `max_children` continuations of its prefix to the end of a solution. Each gives a
child (its first new step; identical steps merge, which is how the children cap shows: a low cap keeps few
alternatives, and the sampled ones often coincide) and an outcome, counted on the nodes it passed through.
A child that ends the solution, or reaches `max_depth`, is terminal and keeps the true outcome as its value;
any other child is valued by the value head (a process reward model: its probability at the child's last
token), mixed with its continuation's outcome by `value_mix` (AlphaGo's lambda; 0 is AlphaZero's pure value
model). The leaf's value for the backup is the mean of its new children's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from r1kit.algorithms.tree_search import Node, add_children, backup, best_path, record_outcome, select, walk
from r1kit.data.problems import Problem
from r1kit.models.process_reward_model import ProcessRewardModel
from r1kit.pipeline.rejection import check_correct
from r1kit.rewards.readable import DEFAULT_SPECIAL_TOKEN
from r1kit.rewards.steps import step_ends
from r1kit.rollout.completions import Completer


@dataclass(frozen=True)
class SearchSettings:
    num_simulations: int = 8
    max_children: int = 4
    max_depth: int = 8
    c_uct: float = 1.0
    value_mix: float = 0.0
    step_mode: str = "lines"
    special_token: str = DEFAULT_SPECIAL_TOKEN
    prefill: str = ""


@dataclass
class Tree:
    """One problem's search: the root holds the prefill; `prompt` is the model's prompt (prefill included)."""

    problem: Problem
    prompt: str
    root: Node
    expansions: int = 0
    distinct_children: list[int] = field(default_factory=list)  # children made by each expansion
    head_values: dict = field(default_factory=dict)  # node -> the value head's estimate when it was created


def new_tree(problem: Problem, prompt: str, prefill: str = "") -> Tree:
    return Tree(problem, prompt, Node(step=prefill))


def node_steps(node: Node) -> list[str]:
    """The steps of a node's prefix as r1kit.rewards.steps splits a solution (the prefill joins the first)."""
    path = node.path()
    steps = [n.step for n in path[1:]]
    return [path[0].step + steps[0], *steps[1:]] if steps else []


def _candidates(tree: Tree, leaf: Node, continuations: list[str], s: SearchSettings) -> list[tuple[str, bool, bool]]:
    """(step text, terminal, correct) of each continuation of the leaf."""
    prefix = leaf.prefix()
    out = []
    for cont in continuations:
        full = prefix + cont
        correct = bool(check_correct(full, tree.problem.answer, s.special_token))
        ends = [e for e in step_ends(full, s.step_mode, s.special_token) if e > len(prefix)]
        terminal = not ends or ends[0] == len(full) or leaf.depth + 1 >= s.max_depth
        out.append((cont if terminal else full[len(prefix):ends[0]], terminal, correct))
    return out


def simulate(trees: list[Tree], completer: Completer, value_model: ProcessRewardModel | None, s: SearchSettings,
             seed: int) -> None:
    """One simulation in every tree: select, expand with one batched generation, evaluate, back up."""
    leaves = []
    for tree in trees:
        leaf = select(tree.root, s.c_uct)
        if leaf.terminal:
            backup(leaf, leaf.reward)
        else:
            leaves.append((tree, leaf))
    if not leaves:
        return
    prompts = [tree.prompt + leaf.prefix()[len(s.prefill):] for tree, leaf in leaves]
    expansions = [_candidates(t, leaf, conts, s)
                  for (t, leaf), conts in zip(leaves, completer.complete(prompts, s.max_children, seed))]
    # the value head on every non-terminal candidate of every leaf, in one batch
    asks = [(t, leaf, step) for (t, leaf), cands in zip(leaves, expansions) for step, terminal, _ in cands if not terminal]
    heads = {}
    if asks and value_model is not None:
        probe = [node_steps(Node(step, leaf, leaf.depth + 1)) for _, leaf, step in asks]
        scores = value_model.score([t.problem.question for t, _, _ in asks], probe)
        heads = {(id(leaf), step): (p[-1] if p else 0.0) for (_, leaf, step), p in zip(asks, scores)}
    for (tree, leaf), cands in zip(leaves, expansions):
        values = []
        for step, terminal, correct in cands:
            head = heads.get((id(leaf), step), 0.5)
            values.append(float(correct) if terminal else (1 - s.value_mix) * head + s.value_mix * float(correct))
        made = add_children(leaf, [(step, v, terminal, float(correct) if terminal else None)
                                   for (step, terminal, correct), v in zip(cands, values)], s.max_children)
        by_step = {child.step: child for child in made}
        for step, terminal, correct in cands:
            record_outcome(by_step[step], correct)
            if not terminal:
                tree.head_values.setdefault(by_step[step], heads.get((id(leaf), step), 0.5))
        tree.expansions += 1
        tree.distinct_children.append(len(made))
        backup(leaf, sum(child.value for child in made) / len(made))


def search(trees: list[Tree], completer: Completer, value_model: ProcessRewardModel | None, s: SearchSettings,
           seed: int) -> None:
    """`num_simulations` simulations in every tree; simulation k's generation is seeded from (seed, k)."""
    for k in range(s.num_simulations):
        simulate(trees, completer, value_model, s, seed * 1_000_003 + k)


def tree_result(tree: Tree, max_solutions: int) -> dict:
    """What a search found: statistics, the chosen solution, up to `max_solutions` distinct correct solutions
    (most visited first) for the actor, and Monte Carlo value records (prompt, steps, labels, counts: one
    per frontier node, the labels of its whole path) for the value head."""
    nodes = walk(tree.root)[1:]
    terminal = [n for n in nodes if n.terminal]
    right = sorted((n for n in terminal if n.reward == 1.0), key=lambda n: -n.visits)
    chosen = best_path(tree.root)[-1]
    errors = [abs(v - n.correct / n.rollouts) for n, v in tree.head_values.items() if n.rollouts]
    frontier = [n for n in nodes if n.rollouts and not any(ch.rollouts for ch in n.children)]
    records = [{"prompt": tree.problem.question, "problem_id": tree.problem.id, "steps": node_steps(n),
                "labels": [m.correct / m.rollouts for m in n.path()[1:]],
                "counts": [[m.correct, m.rollouts] for m in n.path()[1:]]} for n in frontier]
    solutions = list(dict.fromkeys(n.prefix() for n in right))[:max_solutions]
    return {"problem_id": tree.problem.id, "question": tree.problem.question, "answer": tree.problem.answer,
            "nodes": len(nodes), "max_depth": max((n.depth for n in nodes), default=0),
            "terminal_nodes": len(terminal), "correct_leaves": len(right), "found_correct": bool(right),
            "chosen": chosen.prefix(), "chosen_terminal": chosen.terminal, "chosen_correct": chosen.reward == 1.0,
            "expansions": tree.expansions,
            "children_per_expansion": sum(tree.distinct_children) / max(len(tree.distinct_children), 1),
            "value_error": sum(errors) / len(errors) if errors else None, "value_nodes": len(errors),
            "root_share_correct": tree.root.correct / max(tree.root.rollouts, 1), "rollouts": tree.root.rollouts,
            "solutions": solutions, "value_records": records}
