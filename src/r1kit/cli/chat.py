"""`r1kit chat MODEL`: ask a checkpoint questions and watch it think, token by token.

Each question is answered on its own (the R1-Zero template is single-turn, and R1 keeps earlier
thinking out of later turns), with the training templates: `r1zero` (the paper's Table 1) or `chat`
(the model's chat template plus R1's system message), and the response prefilled with `<think>` by
default, as in training. The text inside <think> is shown dim and italic and the text inside <answer>
bold when stdout is a terminal; otherwise (a pipe, a file) each part starts on its own line with a
"[thinking]" or "[answer]" label. The tags themselves are not printed.

Generation is a plain KV-cached token loop (r1kit.rollout's sampler) so each token is printed as soon
as it is drawn, with no extra thread. End of input (Ctrl-D), "exit" or "quit" leave with status 0;
Ctrl-C stops the answer being written, and at the prompt leaves.
"""

from __future__ import annotations

import sys
from typing import Iterator, TextIO

import torch

from r1kit.data.templates import build_prompt
from r1kit.models.cache import cache_kwargs, returned_cache
from r1kit.rollout.sampling import sample_tokens, stop_token_ids

DIM_ITALIC, BOLD, RESET = "\x1b[2;3m", "\x1b[1m", "\x1b[0m"
TAGS = {"<think>": "think", "</think>": "text", "<answer>": "answer", "</answer>": "text"}
LABELS = {"think": "[thinking] ", "answer": "[answer] "}
STOP_STRINGS = ("</answer>",)
EXIT_WORDS = ("exit", "quit", ":q")


class ReplyRenderer:
    """Writes a streamed reply, splitting it at the R1 tags into thinking, answer and other text.

    Chunks may cut a tag in two ("</thi" + "nk>"), so a tail that could still become a tag is held
    back until the next chunk or close().
    """

    def __init__(self, out: TextIO, color: bool):
        self.out, self.color = out, color
        self.part = "text"
        self.pending = ""  # text that may be the start of a tag
        self.blank = ""  # whitespace between parts, printed only if more text follows
        self.at_line_start = True

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.at_line_start = text.endswith("\n")

    def _emit(self, text: str) -> None:
        if self.part == "text":
            # whitespace between </think> and <answer> is layout, not content
            if not text.strip():
                self.blank += text
                return
            text, self.blank = self.blank + text, ""
        self._write(text)

    def _switch(self, part: str) -> None:
        if part == self.part:
            return
        if self.color and self.part != "text":
            self._write(RESET)
        self.blank = ""
        if not self.at_line_start:
            self._write("\n")
        self.part = part
        if part in LABELS:
            self._write((DIM_ITALIC if part == "think" else BOLD) if self.color else LABELS[part])
        self.out.flush()

    def feed(self, chunk: str) -> None:
        """Add the next piece of the reply."""
        buf = self.pending + chunk
        while True:
            hits = [(buf.find(tag), tag) for tag in TAGS if tag in buf]
            if not hits:
                break
            at, tag = min(hits)
            self._emit(buf[:at])
            self._switch(TAGS[tag])
            buf = buf[at + len(tag):]
        hold = max((k for tag in TAGS for k in range(1, len(tag)) if buf.endswith(tag[:k])), default=0)
        self._emit(buf[:len(buf) - hold])
        self.pending = buf[len(buf) - hold:]
        self.out.flush()

    def close(self) -> None:
        """End the reply: flush held-back text, reset the style, end the line."""
        self._emit(self.pending)
        self.pending = ""
        if self.color and self.part != "text":
            self._write(RESET)
        if not self.at_line_start:
            self._write("\n")
        self.part = "text"
        self.out.flush()


@torch.no_grad()
def stream_reply(model, tokenizer, prompt: str, *, max_new_tokens: int = 512, temperature: float = 0.6,
                 top_p: float = 0.95, stop_strings: tuple[str, ...] = STOP_STRINGS,
                 generator: torch.Generator | None = None) -> Iterator[str]:
    """Yield the generated text piece by piece (after each token, once it decodes to whole characters).

    Stops at EOS, after a stop string, or after max_new_tokens. The whole generated text is
    re-decoded each step, so multi-token characters and tokenizer spacing come out right.
    """
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)  # [1, P]
    stops = stop_token_ids(model, tokenizer)
    was_training = model.training
    model.eval()
    try:
        out = model(input_ids=ids, **cache_kwargs(None))
        cache = returned_cache(out)
        logits = out.logits[:, -1]  # [1, V]
        generated: list[int] = []
        shown = ""
        for _ in range(max_new_tokens):
            token, _ = sample_tokens(logits, temperature, top_p, generator)  # [1]
            tok = int(token[0])
            if tok in stops:
                break
            generated.append(tok)
            text = tokenizer.decode(generated, skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # a character split across tokens is shown when complete
                if text.startswith(shown):
                    yield text[len(shown):]
                shown = text
            if any(s in text[-(len(s) + 16):] for s in stop_strings):
                break
            out = model(input_ids=token[:, None], **cache_kwargs(cache))
            cache = returned_cache(out)
            logits = out.logits[:, -1]
    finally:
        model.train(was_training)


def answer(model, tokenizer, question: str, out: TextIO, *, template: str = "r1zero", prefill: str = "<think>",
           color: bool = False, **generation) -> str:
    """Stream the model's reply to one question to `out`; returns the full reply (prefill included)."""
    prompt = build_prompt(question, tokenizer, template, prefill)
    renderer = ReplyRenderer(out, color)
    parts = [prefill]
    renderer.feed(prefill)  # the prefill is part of the reply, as in training
    try:
        for piece in stream_reply(model, tokenizer, prompt, **generation):
            parts.append(piece)
            renderer.feed(piece)
    finally:
        renderer.close()
    return "".join(parts)


def _read_question(interactive: bool) -> str | None:
    """The next line of input, or None at end of input."""
    if interactive:
        try:
            return input("you> ")
        except EOFError:
            print()
            return None
    line = sys.stdin.readline()
    return None if line == "" else line


def chat_loop(model, tokenizer, *, template: str = "r1zero", prefill: str = "<think>", temperature: float = 0.6,
              top_p: float = 0.95, max_new_tokens: int = 512, seed: int | None = None,
              out: TextIO | None = None) -> int:
    """Read questions from stdin until end of input or exit/quit, streaming each answer; returns 0."""
    out = out or sys.stdout
    interactive = sys.stdin.isatty()
    color = out.isatty()
    if interactive:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
    generator = None
    if seed is not None:
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    while True:
        try:
            line = _read_question(interactive)
        except KeyboardInterrupt:
            print()
            return 0
        if line is None:
            return 0
        question = line.strip()
        if not question:
            continue
        if question.lower() in EXIT_WORDS:
            return 0
        try:
            answer(model, tokenizer, question, out, template=template, prefill=prefill, color=color,
                   temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, generator=generator)
        except KeyboardInterrupt:
            out.write("[stopped]\n")
            out.flush()
