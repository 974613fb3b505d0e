"""Prompt templates: the R1-Zero template of the paper (Table 1), verbatim, the model's chat template,
and `plain` (the question as it is).

`prefill` is text the response is forced to start with (DeepSeek's usage advice for R1 is to start the
answer with "<think>"). It belongs to the prompt for the model and to the completion for the rewards:
`completion_text = prefill + generated`.
"""

from __future__ import annotations

from typing import Sequence

from transformers import PreTrainedTokenizerBase

R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here "
    "</answer>. User: {prompt}. Assistant:"
)

# The system message used with chat templates: the same instruction as the R1-Zero template, minus the
# conversation framing that the chat template already provides.
R1_CHAT_SYSTEM = (
    "You are a helpful assistant. You first think about the reasoning process in the mind and then provide "
    "the user with the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer "
    "here </answer>."
)

TEMPLATES = ("r1zero", "chat", "plain")


def chat_messages(question: str, template: str, messages: list[dict] | None = None,
                  system_prompt: str | None = None, examples: Sequence[tuple[str, str]] = ()) -> list[dict] | None:
    """The chat messages a prompt is rendered from under template chat (None under r1zero and plain), which
    TRL-style rewards also get as the prompt.

    `messages` (a conversational record, as in TRL) are used as they are: no system message is added to a
    conversation, except `system_prompt` where it has none. A plain question becomes a user turn after a
    system message (`system_prompt`, open-r1's option, "" for none as a TRL recipe without one has; by
    default R1_CHAT_SYSTEM) and after `examples`, worked (question, response) pairs shown as earlier turns:
    a small model follows a shown exchange far more readily than an instruction.
    """
    if template != "chat":
        return None
    if messages is not None:
        has_system = any(m.get("role") == "system" for m in messages)
        return [{"role": "system", "content": system_prompt}, *messages] if system_prompt and not has_system \
            else messages
    system = R1_CHAT_SYSTEM if system_prompt is None else system_prompt
    shown = [{"role": role, "content": text} for q, r in examples for role, text in (("user", q), ("assistant", r))]
    return [*([{"role": "system", "content": system}] if system else []), *shown,
            {"role": "user", "content": question.strip()}]


def build_prompt(question: str, tokenizer: PreTrainedTokenizerBase, template: str = "r1zero",
                 prefill: str = "", messages: list[dict] | None = None, system_prompt: str | None = None,
                 examples: Sequence[tuple[str, str]] = ()) -> str:
    """The prompt text the model continues, ending with the prefill.

    Under template chat, the messages of `chat_messages` rendered by the model's chat template; with
    template r1zero or plain, `question` (the last user turn of a conversation) is used.
    """
    question = question.strip()
    if examples and template != "chat":
        raise ValueError(f"worked examples are shown as earlier chat turns: they need template=chat, not {template}")
    if template == "r1zero":
        # The paper's template ends in "Assistant:"; a space before the prefill keeps the tag a separate word.
        text = R1_ZERO_TEMPLATE.format(prompt=question.rstrip("."))
        return text + (" " + prefill if prefill else "")
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("template=chat: this model's tokenizer has no chat template; use template=r1zero")
        conversation = chat_messages(question, template, messages, system_prompt, examples)
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        return text + prefill
    if template == "plain":  # the question as it is (base models with few-shot prompts, toy tasks)
        return question + prefill
    raise ValueError(f"template={template!r}: unknown; choose one of {', '.join(TEMPLATES)}")
