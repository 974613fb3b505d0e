"""`r1kit chat`: the streamed reply is the model's own greedy answer, thinking and answer are shown apart,
and the prompt ends cleanly on end of input, on quit, and on Ctrl-D in a terminal."""

import io
import os
import pty
import select
import subprocess
import sys
import time

import torch

from r1kit.cli.chat import BOLD, DIM_ITALIC, RESET, ReplyRenderer, answer, stream_reply
from r1kit.cli.main import main
from r1kit.data.templates import build_prompt
from r1kit.models.loading import load_model, load_tokenizer
from r1kit.rollout.sampling import generate

QUESTION = "What is 2+3?"


def render(chunks: list[str], color: bool) -> str:
    out = io.StringIO()
    renderer = ReplyRenderer(out, color)
    for chunk in chunks:
        renderer.feed(chunk)
    renderer.close()
    return out.getvalue()


def test_renderer_splits_thinking_and_answer_even_when_tags_are_cut():
    chunks = ["<thi", "nk> 2 plus 3 <", "is 5 </th", "ink>", " \n ", "<ans", "wer>5</answer", ">"]
    assert render(chunks, color=False) == "[thinking]  2 plus 3 <is 5 \n[answer] 5\n"
    assert render(chunks, color=True) == f"{DIM_ITALIC} 2 plus 3 <is 5 {RESET}\n{BOLD}5{RESET}\n"
    # no tags at all (a chat model answering plainly): the text as it is; an unfinished think is closed
    assert render(["Hello", " there"], color=False) == "Hello there\n"
    assert render(["<think>hm"], color=True) == f"{DIM_ITALIC}hm{RESET}\n"
    assert render(["a < b and c <"], color=False) == "a < b and c <\n"  # a held-back '<' is flushed at the end


def test_streamed_reply_is_the_models_greedy_answer(tiny_model):
    tok, model = load_tokenizer(tiny_model), load_model(tiny_model)
    prompt = build_prompt(QUESTION, tok, "r1zero", "<think>")
    pieces = list(stream_reply(model, tok, prompt, max_new_tokens=30, temperature=0))
    assert len(pieces) > 1  # streamed, not written at the end
    reference = generate(model, tok, [prompt], num_generations=1, max_new_tokens=30, temperature=0,
                         stop_strings=("</answer>",), generator=torch.Generator().manual_seed(0))
    assert "".join(pieces) == reference.completions[0]


def test_chat_answers_from_stdin_and_exits_cleanly(tiny_model, monkeypatch, capsys):
    tok, model = load_tokenizer(tiny_model), load_model(tiny_model)
    expected = io.StringIO()
    reply = answer(model, tok, QUESTION, expected, max_new_tokens=30, temperature=0)
    assert reply.startswith("<think>") and expected.getvalue().startswith("[thinking] ")

    proc = subprocess.run([sys.executable, "-m", "r1kit.cli", "chat", tiny_model, "--max_new_tokens", "30",
                           "--temperature", "0"], input=f"{QUESTION}\n\nquit\nnot asked\n", capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected.getvalue()  # one answer: the blank line is skipped, quit stops before the last
    assert "\x1b[" not in proc.stdout and "Traceback" not in proc.stderr

    # end of input without quit: status 0, nothing written
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["chat", tiny_model]) == 0
    assert capsys.readouterr().out == ""


def read_until(fd: int, marker: bytes, timeout: float = 120) -> bytes:
    data, deadline = b"", time.monotonic() + timeout
    while marker not in data:
        left = deadline - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], f"timed out waiting for {marker!r}; got {data!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        data += chunk
    return data


def test_chat_in_a_terminal_streams_styled_text_and_leaves_on_ctrl_d(tiny_model):
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "r1kit.cli", "chat", tiny_model, "--max_new_tokens", "30",
                             "--temperature", "0"], stdin=terminal, stdout=terminal, stderr=subprocess.PIPE,
                            env={**os.environ, "TERM": "xterm"}, close_fds=True)
    os.close(terminal)
    try:
        read_until(controller, b"you> ")
        os.write(controller, f"{QUESTION}\n".encode())
        shown = read_until(controller, b"you> ")
        assert DIM_ITALIC.encode() in shown and RESET.encode() in shown  # thinking shown dim, not labelled
        assert b"[thinking]" not in shown
        os.write(controller, b"\x04")  # Ctrl-D at the prompt
        proc.wait(timeout=60)
        assert proc.returncode == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
        proc.stderr.close()
