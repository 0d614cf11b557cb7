"""The natural language inside code: comments and docstrings, for the English check on code documents.

`extract_comments(code, lang)` returns the comment texts (markers stripped) in file order. Python uses its own
tokenizer and `ast` (comments and docstrings exactly); other languages a small scanner that knows each family's
comment markers and skips string literals, so `"http://x"` is not a comment. Unknown languages give [].
Language names are the pipeline's (`data_pipeline.sources.languages`: "python", "cpp", "c-sharp", ...).
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass


@dataclass(frozen=True)
class CommentSyntax:
    line: tuple[str, ...] = ()  # markers that start a comment running to the end of the line
    block: tuple[tuple[str, str], ...] = ()  # (open, close) pairs
    strings: tuple[str, ...] = ('"', "'")  # string delimiters (one-line; backslash escapes)
    multiline_strings: tuple[str, ...] = ()  # delimiters of strings that may span lines


_C_LIKE = CommentSyntax(("//",), (("/*", "*/"),), ('"', "'"), ("`",))
_HASH = CommentSyntax(("#",), (), ('"', "'"))
_DASH = CommentSyntax(("--",), (), ('"', "'"))
_LISP = CommentSyntax((";",), (("#|", "|#"),), ('"',))
_MARKUP = CommentSyntax((), (("<!--", "-->"),), ())

SYNTAX: dict[str, CommentSyntax] = {
    **{lang: _C_LIKE for lang in (
        "c", "cpp", "java", "javascript", "typescript", "kotlin", "scala", "groovy", "go", "rust", "c-sharp",
        "swift", "objective-c", "dart", "cuda", "solidity", "zig", "verilog", "systemverilog", "protocol-buffer",
        "scss", "less", "glsl", "hlsl", "d")},
    "css": CommentSyntax((), (("/*", "*/"),), ('"', "'")),
    "php": CommentSyntax(("//", "#"), (("/*", "*/"),), ('"', "'")),
    "f-sharp": CommentSyntax(("//",), (("(*", "*)"),), ('"',)),
    "ocaml": CommentSyntax((), (("(*", "*)"),), ('"',)),
    **{lang: _HASH for lang in (
        "shell", "ruby", "perl", "r", "yaml", "toml", "cmake", "makefile", "dockerfile", "starlark", "awk", "tcl",
        "nim", "just", "elixir", "coffeescript", "powershell")},
    "julia": CommentSyntax(("#",), (("#=", "=#"),), ('"',)),
    "sql": CommentSyntax(("--",), (("/*", "*/"),), ("'", '"')),
    "lua": CommentSyntax(("--",), (("--[[", "]]"),), ('"', "'")),
    "haskell": CommentSyntax(("--",), (("{-", "-}"),), ('"',)),
    "elm": CommentSyntax(("--",), (("{-", "-}"),), ('"',)),
    "purescript": CommentSyntax(("--",), (("{-", "-}"),), ('"',)),
    "vhdl": _DASH,
    "ada": _DASH,
    **{lang: _LISP for lang in ("clojure", "racket", "scheme", "common-lisp", "emacs-lisp")},
    "erlang": CommentSyntax(("%",), (), ('"',)),
    "tex": CommentSyntax(("%",), (), ()),
    "matlab": CommentSyntax(("%",), (("%{", "%}"),), ('"',)),
    "fortran": CommentSyntax(("!",), (), ('"', "'")),
    "assembly": CommentSyntax((";", "#"), (("/*", "*/"),), ('"',)),
    "vim-script": CommentSyntax(('"',), (), ("'",)),
    **{lang: _MARKUP for lang in ("html", "xml", "markdown")},
    "vue": CommentSyntax(("//",), (("<!--", "-->"), ("/*", "*/")), ('"', "'"), ("`",)),
    "svelte": CommentSyntax(("//",), (("<!--", "-->"), ("/*", "*/")), ('"', "'"), ("`",)),
}
_DECORATION = re.compile(r"^\s*(?:[*/!#;%-]+\s?)")  # leading `*` of block lines, `///`, `//!`, `;;`, `##`


def supported(lang: str | None) -> bool:
    return lang is not None and (lang.lower() == "python" or lang.lower() in SYNTAX)


def extract_comments(code: str, lang: str | None) -> list[str]:
    """Comment (and, for Python, docstring) texts of `code`, markers and decoration stripped, blanks dropped."""
    if lang is None:
        return []
    lang = lang.lower()
    if lang in ("python", "cython"):
        raw = _python_comments(code)
    elif lang in SYNTAX:
        raw = _scan(code, SYNTAX[lang])
    else:
        return []
    return [text for text in (_clean(c) for c in raw) if text]


def _clean(comment: str) -> str:
    lines = [_DECORATION.sub("", line).strip() for line in comment.splitlines()]
    return "\n".join(line for line in lines if line)


def _python_comments(code: str) -> list[str]:
    try:
        tree = ast.parse(code)
        comments = [t.string[1:] for t in tokenize.generate_tokens(io.StringIO(code).readline)
                    if t.type == tokenize.COMMENT and not t.string.startswith("#!")]
    except (SyntaxError, ValueError, tokenize.TokenError, RecursionError):
        return _scan(code, CommentSyntax(("#",), (), ('"', "'"), ('"""', "'''")))
    docstrings = [ast.get_docstring(node, clean=True) or "" for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return docstrings + comments


def _scan(code: str, syntax: CommentSyntax) -> list[str]:
    """One pass over `code`: skip strings, collect line and block comments. A one-line string delimiter with no
    closing partner on its line is taken as a plain character (Rust lifetimes, Lisp quotes, apostrophes)."""
    out: list[str] = []
    i, n = 0, len(code)
    multiline = sorted(syntax.multiline_strings, key=len, reverse=True)
    while i < n:
        if code.startswith("#!", i) and i == 0:  # shebang
            i = _line_end(code, i)
            continue
        block = next(((o, c) for o, c in syntax.block if code.startswith(o, i)), None)
        if block:
            end = code.find(block[1], i + len(block[0]))
            end = n if end < 0 else end
            out.append(code[i + len(block[0]):end])
            i = end + len(block[1])
            continue
        marker = next((m for m in syntax.line if code.startswith(m, i)), None)
        if marker:
            end = _line_end(code, i)
            out.append(code[i + len(marker):end])
            i = end
            continue
        delim = next((d for d in multiline if code.startswith(d, i)), None)
        if delim:
            i = _string_end(code, i + len(delim), delim, multiline=True)
            continue
        if code[i] in syntax.strings:
            end = _string_end(code, i + 1, code[i], multiline=False)
            i = end if end > 0 else i + 1
            continue
        i += 1
    return out


def _line_end(code: str, i: int) -> int:
    end = code.find("\n", i)
    return len(code) if end < 0 else end


def _string_end(code: str, i: int, delim: str, multiline: bool) -> int:
    """Index just past the closing `delim`; -1 for a one-line string not closed on its line."""
    n = len(code)
    while i < n:
        ch = code[i]
        if ch == "\\":
            i += 2
            continue
        if code.startswith(delim, i):
            return i + len(delim)
        if ch == "\n" and not multiline:
            return -1
        i += 1
    return n if multiline else -1
