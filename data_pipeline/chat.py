"""The release's chat format (docs/refact_1_6b.md), the one encoding that chat SFT and chat prompts share:

`<empty_output>SYSTEM {system}\n<empty_output>USER {query}\n<empty_output>ASSISTANT {answer}\n` ... and, in training,
an EOT after the conversation. The separators are inserted as special ids, since `tokenizer.encode` never turns
special-token text into special ids.
"""
from __future__ import annotations

from typing import Any, Sequence

ROLE_TAGS = {"system": "SYSTEM", "user": "USER", "assistant": "ASSISTANT"}


def _turn(tokenizer: Any, i: int, msg: dict[str, str]) -> tuple[list[int], list[int]]:
    """(header ids, body ids) of one message: `<empty_output>ROLE` and ` content\\n`."""
    role = msg.get("role")
    if role not in ROLE_TAGS:
        raise ValueError(f"chat message {i}: role {role!r}; expected one of {sorted(ROLE_TAGS)}")
    return [tokenizer.empty_output_id] + tokenizer.encode(ROLE_TAGS[role]), tokenizer.encode(f" {msg['content']}\n")


def encode_chat(messages: Sequence[dict[str, str]], tokenizer: Any) -> tuple[list[int], list[bool]]:
    """Token ids and loss mask of one training conversation: True on assistant replies (and the final EOT)."""
    ids: list[int] = []
    mask: list[bool] = []
    for i, msg in enumerate(messages):
        header, body = _turn(tokenizer, i, msg)
        ids += header + body
        mask += [False] * len(header) + [msg["role"] == "assistant"] * len(body)
    ids.append(tokenizer.eot_id)
    mask.append(bool(messages) and messages[-1]["role"] == "assistant")
    return ids, mask


def chat_prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """Ids of a conversation ending with an open `ASSISTANT` turn, for the model to answer: the prefix that
    `encode_chat` trains the answer after."""
    ids: list[int] = []
    for i, msg in enumerate(messages):
        header, body = _turn(tokenizer, i, msg)
        ids += header + body
    return ids + _turn(tokenizer, len(messages), {"role": "assistant", "content": ""})[0]
