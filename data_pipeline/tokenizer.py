"""Byte-level BPE tokenizer of the StarCoder family with the Refact special tokens (docs/refact_1_6b.md).

Loads a released `tokenizer.json` (or `vocab.json` + `merges.txt`) and trains a new one with HF `tokenizers`.
It lives in `data_pipeline` because the pipeline trains and applies it, and the trainer and the evals use it too.

The release's chat format is here too (`encode_chat`, `chat_prompt_ids`: the one encoding that chat SFT and chat
prompts share): `<empty_output>SYSTEM {system}\n<empty_output>USER {query}\n<empty_output>ASSISTANT {answer}\n` ...
and, in training, an EOT after the conversation. Its separators are inserted as special ids, since `encode` never
turns special-token text into special ids.

Raw bytes that are not valid UTF-8 (a file read with `open(..., "rb")`) go through `encode_bytes`: valid UTF-8 runs are
tokenized as text and every invalid byte becomes the single-byte token the byte-level alphabet has for it, so
`decode_bytes(encode_bytes(b)) == b` for any `b`.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from data_pipeline.atomic import atomic_path, write_text_atomic

SPECIAL_TOKENS: tuple[str, ...] = (  # ids 0-18, the release's order
    "<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>", "<gh_stars>",
    "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>", "<jupyter_text>", "<jupyter_code>",
    "<jupyter_output>", "<empty_output>", "<commit_before>", "<commit_msg>", "<commit_after>", "<reponame>",
)
EMBEDDING_MULTIPLE = 64
# Largest vocabulary train_bpe accepts: the BPE trainer allocates for vocab_size up front (2**40 aborted the process
# with a Rust out-of-memory error); the largest released vocabularies have about 2**18 entries.
MAX_VOCAB_SIZE = 2**21


def padded_vocab_size(n: int, multiple: int = EMBEDDING_MULTIPLE) -> int:
    """Embedding rows for a vocabulary of `n` entries: the next multiple of 64.

    The release's embedding has 49216 rows for a 49152-entry tokenizer, i.e. 64 rows more than this rule gives
    (49152 is already a multiple of 64); its model config carries 49216 as data, not derived from this function.
    """
    return int(math.ceil(n / multiple) * multiple)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which the ByteLevel pre-tokenizer uses."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_TO_CHAR = _bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


@dataclass
class RefactTokenizer:
    """A `tokenizers.Tokenizer` plus the ids and helpers the pipeline, trainer and evals need."""

    tokenizer: Tokenizer
    source: str | None = None  # where it was loaded from, for error messages

    def __post_init__(self) -> None:
        # all 19, not only the FIM ones: chat prompts and generation stops use <empty_output> (14) by id
        for expected_id, tok in enumerate(SPECIAL_TOKENS):
            found = self.tokenizer.token_to_id(tok)
            if found != expected_id:
                raise ValueError(
                    f"tokenizer {self.source or '<in memory>'}: special token {tok!r} has id {found}, expected "
                    f"{expected_id}. Train it with data_pipeline.tokenizer.train_bpe or use the released tokenizer.json."
                )
        # Plain-text encoding must not turn a literal "<|endoftext|>" inside a source file into a document boundary.
        self.tokenizer.encode_special_tokens = True

    # ---- ids -------------------------------------------------------------------------------------------------
    eot_id = 0
    fim_prefix_id = 1
    fim_middle_id = 2
    fim_suffix_id = 3
    fim_pad_id = 4
    empty_output_id = 14

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def padded_vocab_size(self) -> int:
        return padded_vocab_size(self.vocab_size)

    @property
    def token_dtype(self) -> type:
        return np.uint16 if self.vocab_size <= 2**16 else np.uint32

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.tokenizer.to_str().encode("utf-8")).hexdigest()

    # ---- text ------------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    # ---- raw bytes -------------------------------------------------------------------------------------------
    @cached_property
    def _byte_ids(self) -> list[int]:
        ids = [self.tokenizer.token_to_id(BYTE_TO_CHAR[b]) for b in range(256)]
        missing = [b for b, i in enumerate(ids) if i is None]
        if missing:
            raise ValueError(f"tokenizer {self.source}: not byte-level (no token for bytes {missing[:5]}...)")
        return ids

    @cached_property
    def _id_to_bytes(self) -> list[bytes]:
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        table: list[bytes] = [b""] * (max(vocab.values()) + 1)
        specials = set(SPECIAL_TOKENS) | {t.content for t in self.tokenizer.get_added_tokens_decoder().values()}
        for token, i in vocab.items():
            if token in specials:
                table[i] = token.encode("utf-8")
            else:
                table[i] = bytes(CHAR_TO_BYTE[c] for c in token)
        return table

    def encode_bytes(self, data: bytes) -> list[int]:
        ids: list[int] = []
        pos = 0
        while pos < len(data):
            try:
                ids.extend(self.encode(data[pos:].decode("utf-8")))
                break
            except UnicodeDecodeError as err:
                good_end = pos + err.start
                if good_end > pos:
                    ids.extend(self.encode(data[pos:good_end].decode("utf-8")))
                bad_end = pos + err.end
                ids.extend(self._byte_ids[b] for b in data[good_end:bad_end])
                pos = bad_end
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        table = self._id_to_bytes
        return b"".join(table[i] for i in ids)

    # ---- files -----------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write tokenizer.json and the two small files `transformers.AutoTokenizer` reads."""
        out = Path(directory)
        with atomic_path(out / "tokenizer.json") as tmp:
            self.tokenizer.save(str(tmp))
        eot = SPECIAL_TOKENS[0]
        special = {"bos_token": eot, "eos_token": eot, "unk_token": eot, "pad_token": "<fim_pad>",
                   "additional_special_tokens": list(SPECIAL_TOKENS[1:])}
        write_text_atomic(out / "special_tokens_map.json", json.dumps(special, indent=2))
        config = {"tokenizer_class": "PreTrainedTokenizerFast", **special, "model_max_length": 4096,
                  "clean_up_tokenization_spaces": False}
        write_text_atomic(out / "tokenizer_config.json", json.dumps(config, indent=2))
        return out / "tokenizer.json"


def _byte_level(model: models.Model) -> Tokenizer:
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def _read(what: Path, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except Exception as err:  # noqa: BLE001 - the tokenizers library raises a bare Exception naming no file
        raise ValueError(f"{what}: not a tokenizer the `tokenizers` library can read ({err})") from err


def load_tokenizer(path: str | Path) -> RefactTokenizer:
    """Load a tokenizer from a directory (tokenizer.json, or vocab.json + merges.txt) or a tokenizer.json file."""
    p = Path(path)
    file = p if p.is_file() else p / "tokenizer.json"
    if file.is_file():
        return RefactTokenizer(_read(file, lambda: Tokenizer.from_file(str(file))), source=str(file))
    if (p / "vocab.json").is_file() and (p / "merges.txt").is_file():
        tok = _byte_level(_read(p, lambda: models.BPE.from_file(str(p / "vocab.json"), str(p / "merges.txt"))))
        tok.add_special_tokens([t for t in SPECIAL_TOKENS if tok.token_to_id(t) is not None])
        return RefactTokenizer(tok, source=str(p))
    raise FileNotFoundError(
        f"no tokenizer at {p}: expected tokenizer.json, or vocab.json + merges.txt, in that directory "
        f"(or the path of a tokenizer.json file). Train one with `data_pipeline.tokenizer.train_bpe`."
    )


def train_bpe(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> RefactTokenizer:
    """Train a byte-level BPE with the 19 Refact special tokens at ids 0-18 (the release's order).

    `vocab_size` counts the specials and the 256 byte tokens; the embedding is later padded to a multiple of 64.
    An empty corpus is refused: it would give the 275 specials and bytes and no merge, silently.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not (
            len(SPECIAL_TOKENS) + 256 <= vocab_size <= MAX_VOCAB_SIZE):
        raise ValueError(f"vocab_size {vocab_size!r} must be an integer from the {len(SPECIAL_TOKENS) + 256} specials "
                         f"and bytes to {MAX_VOCAB_SIZE}")
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 0:
        raise ValueError(f"min_frequency {min_frequency!r} must be an integer >= 0")
    texts = iter(texts)
    first = next((t for t in texts if t), None)
    if first is None:
        raise ValueError("train_bpe: no text to train on (the corpus is empty)")
    tok = _byte_level(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(itertools.chain([first], texts), trainer=trainer)
    return RefactTokenizer(tok, source="<trained>")


# ---- the release's chat format (docs/refact_1_6b.md) -----------------------------------------------------------------
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


@dataclass(frozen=True)
class TokenizerKeys:
    """The `tokenizer` section of configs/pipeline.yaml: a tokenizer given by path, or trained on the kept documents."""

    path: str | None = None
    train: bool = False
    vocab_size: int = 4096
    min_frequency: int = 2
    train_max_bytes: int = 200_000_000

    def __post_init__(self) -> None:
        if self.path and self.train:
            raise ValueError("tokenizer: give tokenizer.path or tokenizer.train=true, not both")
        for key, low, high in (("vocab_size", len(SPECIAL_TOKENS) + 256, MAX_VOCAB_SIZE), ("min_frequency", 0, None),
                               ("train_max_bytes", 1, None)):  # checked before the first stage, not after the last
            if not low <= getattr(self, key) <= (high or getattr(self, key)):
                raise ValueError(f"tokenizer.{key} must be within [{low}, {high or 'inf'}], got {getattr(self, key)}")
