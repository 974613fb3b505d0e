"""Preference pairs (prompt, chosen, rejected) for reward models: read from JSONL, or a synthetic toy set
(polite, helpful replies preferred to curt ones) for tests and the tiny pipeline."""

from __future__ import annotations

import random
from pathlib import Path

from r1kit.core.errors import DataError
from r1kit.data.sources import read_records


def check_pair(rec: dict, where: str, fields: tuple[str, str, str]) -> dict:
    """The pair as {"prompt", "chosen", "rejected"}; DataError naming `where` when a field is unusable."""
    out = {}
    for key, field in zip(("prompt", "chosen", "rejected"), fields):
        value = rec.get(field) if isinstance(rec, dict) else None
        if value is None:
            raise DataError(f"{where}: missing field '{field}' (set {key}_field)")
        if not isinstance(value, str):
            raise DataError(f"{where}: field '{field}' is a {type(value).__name__}, expected text")
        out[key] = value
    if not out["prompt"].strip():
        raise DataError(f"{where}: field '{fields[0]}' is empty")
    return out


def read_preference_pairs(path: str | Path, prompt_field: str = "prompt", chosen_field: str = "chosen",
                          rejected_field: str = "rejected") -> list[dict]:
    """Pairs {"prompt", "chosen", "rejected"} from a JSONL file (or any source r1kit.data.read_records
    takes); DataError names file:line (or the row) on bad input.
    An empty response is allowed (it is a typical rejected one); an empty prompt is not."""
    fields = (prompt_field, chosen_field, rejected_field)
    return [check_pair(rec, where, fields) for where, rec in read_records(path)]


TOY_NAMES = ("Bob", "Alice", "Sam", "Maria", "Tom", "Lena", "Omar", "Priya", "Jack", "Mei", "Ravi", "Nora",
             "Leo", "Zoe", "Ivan", "Sara", "Ben", "Yuki", "Carlos", "Emma", "Noah", "Ada", "Finn", "Lily",
             "Hugo", "Ines", "Kofi", "Anna", "Paul", "Rosa", "Max", "Eva")


TOY_THINGS = ("gift", "book", "flowers", "dinner", "card", "cake", "scarf", "letter")


TOY_CHORES = ("homework", "move", "garden", "report", "code", "shopping", "bike", "essay")


# (prompt templates, chosen templates, words for {x}); other fields: {n} a name, {a} {b} {c} numbers
TOY_TASKS = (
    (("Say hi to {n}.", "Please greet {n}.", "Can you say hello to {n}?"),
     ("Hi {n}, nice to meet you.", "Hello {n}, it is great to meet you.", "Hi {n}, I hope you are having a good day."),
     ()),
    (("Thank {n} for the {x}.", "Write a short thank you note to {n} for the {x}."),
     ("Thank you for the {x}, {n}. It was very kind of you.", "Dear {n}, thank you so much for the lovely {x}."),
     TOY_THINGS),
    (("Wish {n} a happy birthday.", "It is the birthday of {n} today. What should I say?"),
     ("Happy birthday, {n}. I hope you have a wonderful day.", "Happy birthday, {n}. Wishing you a great year ahead."),
     ()),
    (("Tell {n} good night.", "Say good night to {n}."),
     ("Good night, {n}. Sleep well.", "Good night, {n}. See you tomorrow."),
     ()),
    (("Can you help {n} with the {x}?", "{n} needs help with the {x}. Can you help?"),
     ("Of course. I would be happy to help {n} with the {x}.", "Sure, {n}. Let us work on the {x} together."),
     TOY_CHORES),
    (("What is {a} plus {b}?", "{n} asks: what is {a} plus {b}?"),
     ("{a} plus {b} is {c}.", "The answer is {c}, because {a} plus {b} equals {c}."),
     ()),
    (("Apologise to {n} for being late.", "Say sorry to {n} for being late."),
     ("Sorry I am late, {n}. Thank you for waiting.", "I am very sorry for being late, {n}. It will not happen again."),
     ()),
    (("Ask {n} how the trip was.", "{n} is back from a trip. What could I ask?"),
     ("Hi {n}, how was your trip?", "Welcome back, {n}. Did you enjoy the trip?"),
     ()),
)


# Rude, irrelevant or empty-ish replies; some are long and some name the person, so neither length nor
# the name alone tells the two sides apart.
TOY_REJECTED = (
    "No.", "Go away.", "Not my problem.", "Whatever.", "I do not want to.", "Ask someone else.", "That is boring.",
    "Why should I?", "Leave me alone.", "I will not do that.", "ok.", "Bananas are yellow.", "Error.", "?", "...",
    "The bus leaves at 9 and the weather report says rain on Tuesday, so bring a coat.",
    "I have better things to do than answer questions like this one all day long.",
    "{n} is not worth my time.", "I do not care about {n}.", "Tell {n} yourself.", "{n} can do it alone.",
    "Stop asking me about {n}, it is really annoying and I will not answer.",
)


def toy_preferences(n: int, seed: int) -> list[dict]:
    """n distinct synthetic pairs {"prompt", "chosen", "rejected"}: the chosen reply is polite and answers the
    request (greetings, thanks, help, sums, ...), the rejected one is rude, irrelevant or empty-ish.

    Deterministic in (n, seed); only letters, digits and " .,?:" (the tiny model's characters). Names,
    prompt wordings and replies vary, so a model has to learn the rule, not the strings.
    """
    rng = random.Random(seed)
    out: list[dict] = []
    seen: set[tuple[str, str, str]] = set()
    for _ in range(200 * n):
        if len(out) == n:
            break
        prompts, replies, words = rng.choice(TOY_TASKS)
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        fill = {"n": rng.choice(TOY_NAMES), "x": rng.choice(words) if words else "", "a": a, "b": b, "c": a + b}
        pair = (rng.choice(prompts).format(**fill), rng.choice(replies).format(**fill),
                rng.choice(TOY_REJECTED).format(**fill))
        if pair not in seen:
            seen.add(pair)
            out.append({"prompt": pair[0], "chosen": pair[1], "rejected": pair[2]})
    if len(out) < n:
        raise ValueError(f"toy_preferences: only {len(out)} distinct pairs could be drawn, {n} asked")
    return out
