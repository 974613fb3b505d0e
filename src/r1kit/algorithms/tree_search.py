"""Monte Carlo tree search over solution steps, as pure tree operations (AlphaZero's loop, the way DeepSeek-R1
section 4.2 tried it: steps as actions, a value model guiding the search, a cap on children per node).

A node is a step added to its parent's prefix. One simulation is: `select` a leaf from the root by UCT,
expand it (the caller samples continuations and scores them: r1kit.pipeline.mcts_search), `add_children`
with their values, and `backup` the leaf's value along its path. The caller also records each sampled
continuation's outcome on the nodes it passed through (`record_outcome`): those Monte Carlo shares are the
value model's training targets, and its error against them is what the paper calls hard to get right.

UCT (Kocsis and Szepesvari 2006): value(child) + c * sqrt(ln visits(parent) / visits(child)); a child is
created with one visit holding its value estimate (AlphaZero's leaf evaluation), so every child has a
finite score and ties go to the child created first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(eq=False)
class Node:
    step: str = ""  # the text this action adds to the parent's prefix ("" at the root)
    parent: "Node | None" = None
    depth: int = 0  # steps from the root
    estimate: float = 0.0  # the value estimate the node was created with
    visits: int = 0
    value_sum: float = 0.0
    terminal: bool = False  # the solution ends here
    reward: float | None = None  # a terminal node's outcome
    children: list["Node"] = field(default_factory=list)
    correct: int = 0  # sampled continuations through this node that reached the right answer
    rollouts: int = 0  # sampled continuations through this node

    @property
    def value(self) -> float:
        """The mean of the values backed up through this node (its estimate before any)."""
        return self.value_sum / self.visits if self.visits else self.estimate

    def path(self) -> list["Node"]:
        """The nodes from the root to this one."""
        nodes, node = [], self
        while node is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def prefix(self) -> str:
        """The solution text up to and including this node's step."""
        return "".join(n.step for n in self.path())


def uct(child: Node, parent_visits: int, c: float) -> float:
    """value + c * sqrt(ln N(parent) / N(child)); an unvisited child scores +inf (tried first)."""
    if child.visits == 0:
        return math.inf
    return child.value + c * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def select(root: Node, c: float) -> Node:
    """Descend from the root by UCT to a node without children (a leaf to expand, or a terminal node)."""
    node = root
    while node.children and not node.terminal:
        parent = node
        node = max(parent.children, key=lambda ch: uct(ch, parent.visits, c))  # max keeps the first of ties
    return node


def backup(node: Node, value: float) -> None:
    """Add one visit with `value` to the node and each of its ancestors."""
    while node is not None:
        node.visits += 1
        node.value_sum += value
        node = node.parent


def add_children(node: Node, candidates: list[tuple[str, float, bool, float | None]], max_children: int) -> list[Node]:
    """Children of `node` from (step text, value, terminal, reward) candidates: identical steps merge (the
    first is kept), at most `max_children`; each starts with one visit holding its value. Returns the
    children in the order created."""
    seen: dict[str, Node] = {}
    for step, value, terminal, reward in candidates:
        if step in seen or len(seen) >= max_children:
            continue
        child = Node(step, node, node.depth + 1, value, 1, value, terminal, reward)
        seen[step] = child
        node.children.append(child)
    return list(seen.values())


def record_outcome(node: Node, correct: bool) -> None:
    """A sampled continuation that passed through `node` ended correct or not: counted on it and its
    ancestors (the Monte Carlo value targets)."""
    for n in node.path():
        n.rollouts += 1
        n.correct += int(correct)


def best_path(root: Node) -> list[Node]:
    """The search's answer: from the root, the most visited child at each level (ties: the higher value,
    then the first), down to a node without children."""
    path, node = [root], root
    while node.children:
        node = max(node.children, key=lambda ch: (ch.visits, ch.value))
        path.append(node)
    return path


def walk(root: Node) -> list[Node]:
    """Every node of the tree, parents before children."""
    nodes, stack = [], [root]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(reversed(node.children))
    return nodes
