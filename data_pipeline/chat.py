"""The release's chat format (REFACT-1.6B.md):

`<empty_output>SYSTEM {system}\n<empty_output>USER {query}\n<empty_output>ASSISTANT` — each further turn
`<empty_output>USER ...\n` / `<empty_output>ASSISTANT ...\n`. The separators are inserted as special ids, since
`tokenizer.encode` never turns special-token text into special ids.
"""
from __future__ import annotations

from typing import Any, Sequence

ROLE_TAGS = {"system": "SYSTEM", "user": "USER", "assistant": "ASSISTANT"}


def chat_prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """Ids of a conversation ending with an open `ASSISTANT` turn, for the model to answer."""
    ids: list[int] = []
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role not in ROLE_TAGS:
            raise ValueError(f"chat message {i}: role {role!r}; expected one of {sorted(ROLE_TAGS)}")
        ids += [tokenizer.empty_output_id] + tokenizer.encode(f"{ROLE_TAGS[role]} {msg['content']}\n")
    return ids + [tokenizer.empty_output_id] + tokenizer.encode("ASSISTANT")
