"""The only way data crosses between the trusted checker and the sandboxed candidate: plain values as tagged JSON.

Both sides import this file (standard library only: inside the sandbox the project is not importable). Encoding
accepts exact built-in types only (a subclass with its own `__eq__` is refused, not converted), and decoding builds
fresh built-in objects with `json.loads`, so nothing the candidate defines ever runs in the checker.

JSON has no tuples, sets or non-string keys, so containers other than lists travel as one-key objects:
`{"tuple": [...]}`, `{"set": [...]}`, `{"frozenset": [...]}`, `{"dict": [[k, v], ...]}`, `{"bytes": "hex"}`,
`{"complex": [re, im]}`. A JSON object of any other shape is malformed. Floats keep NaN and the infinities.
A message is a JSON array `[kind, value, ...]` (kind a string), framed as a 4-byte big-endian length and that many
bytes of UTF-8 JSON.
"""
import json
import os
import select
import time

# A bigger message is malformed. The checker decodes answers outside any cgroup, and 8 MB of JSON built as `[[],[],...]`
# already takes ~220 MB and ~1 s there (64 MB took 1.7 GB per worker).
MAX_MESSAGE_BYTES = 8 << 20
MAX_DEPTH = 64  # nesting; deeper values are refused on both sides (json's own recursion would also stop them)
_TAGS = ("tuple", "set", "frozenset", "dict", "bytes", "complex")


class WireError(Exception):
    """A value that cannot be sent, or a message that is malformed, truncated, too large or too late."""


def to_plain(value, depth=0):
    """A JSON-ready structure for `value`, or WireError for anything but exact built-in plain types."""
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH}")
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [to_plain(v, depth + 1) for v in value]
    if kind is tuple or kind is set or kind is frozenset:
        return {kind.__name__: [to_plain(v, depth + 1) for v in value]}
    if kind is dict:
        return {"dict": [[to_plain(k, depth + 1), to_plain(v, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is complex:
        return {"complex": [value.real, value.imag]}
    raise WireError(f"a value of type {kind.__module__}.{kind.__qualname__} cannot be passed as plain data")


def _from_tag(obj):
    if len(obj) != 1:
        raise WireError(f"malformed message: object with keys {sorted(obj)[:5]}")
    (tag, body), = obj.items()
    if tag not in _TAGS:
        raise WireError(f"malformed message: unknown tag {tag!r}")
    if tag == "bytes":
        if type(body) is not str:
            raise WireError("malformed message: bytes must be a hex string")
        return bytes.fromhex(body)
    if type(body) is not list:
        raise WireError(f"malformed message: {tag} must hold a list")
    if tag == "tuple":
        return tuple(body)
    if tag in ("set", "frozenset"):
        return (set if tag == "set" else frozenset)(body)  # unhashable members raise TypeError: malformed
    if tag == "complex":
        if len(body) != 2 or any(type(x) not in (int, float) for x in body):
            raise WireError("malformed message: complex must be [re, im]")
        return complex(body[0], body[1])
    if any(type(pair) is not list or len(pair) != 2 for pair in body):
        raise WireError("malformed message: dict must be a list of [key, value] pairs")
    return dict((k, v) for k, v in body)


def loads(data: bytes):
    try:
        return json.loads(data.decode("utf-8"), object_hook=_from_tag)
    except (UnicodeDecodeError, ValueError, TypeError, OverflowError, RecursionError) as err:  # complex(10**400, 0)
        raise WireError(f"malformed message: {type(err).__name__}: {str(err)[:200]}") from None


def send(fd: int, kind: str, *values) -> None:
    """Write one framed message `[kind, *values]` (blocking); WireError if a value is not plain data."""
    body = json.dumps([kind, *(to_plain(v) for v in values)], separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
    data = len(body).to_bytes(4, "big") + body
    while data:
        data = data[os.write(fd, data):]


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise WireError("no answer before the deadline")
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise WireError("the other side closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(fd: int, deadline: float | None = None) -> tuple[str, list]:
    """Read one framed message: (kind, values), the values decoded into fresh built-in objects."""
    size = int.from_bytes(_read_exactly(fd, 4, deadline), "big")
    if size > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {size} bytes exceeds {MAX_MESSAGE_BYTES}")
    message = loads(_read_exactly(fd, size, deadline))
    if type(message) is not list or not message or type(message[0]) is not str:
        raise WireError("malformed message: not [kind, ...]")
    return message[0], message[1:]
