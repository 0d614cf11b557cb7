"""Turn the markup of the labelled set's sources (roff man pages, reStructuredText, MediaWiki) into plain prose.

Only good enough that the classifier learns words, not markup: a roff escape or a wiki template left in the text of
one source would be a feature that marks the source instead of the topic.
"""
from __future__ import annotations

import html
import re

# ---- roff (man pages) -----------------------------------------------------------------------------------------
_ROFF_TEXT_MACROS = {  # macros whose arguments are running text
    "SH", "SS", "B", "I", "BR", "RB", "IR", "RI", "BI", "IB", "SM", "SB", "IP", "TP", "Nm", "Nd", "Ar", "Fl", "Cm",
    "Dv", "Er", "Ev", "Fn", "Fa", "Ft", "Pa", "Va", "Xr", "Sh", "Ss", "It", "Em", "Sy", "Li", "Ql", "Dq", "Sq", "Pq",
    "Op", "Ic", "Tn", "UR", "MT", "OP",
}
_ROFF_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes
    (re.compile(r"\\s[+-]?\d+"), ""),  # size changes
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),  # string interpolation
    (re.compile(r"\\\((em|en|hy|mi)"), "-"),
    (re.compile(r"\\\((lq|rq|oq|cq|dq)"), '"'),
    (re.compile(r"\\\(..|\\\[[^\]]*\]"), " "),  # other named glyphs
    (re.compile(r"\\[nkwhvlLxbozZ](\[[^\]]*\]|'[^']*'|\(..|.)"), ""),  # registers, motions, drawing
    (re.compile(r"\\[-e]"), lambda m: "-" if m.group(0) == "\\-" else "\\"),
    (re.compile(r"\\[&|^%:)c!]"), ""),
    (re.compile(r"\\(.)"), r"\1"),
]


def roff_to_text(source: str) -> str:
    """Plain text of a man page's roff source: macro arguments kept, requests and escapes removed."""
    out: list[str] = []
    in_definition = False
    for raw in source.splitlines():
        line = raw.rstrip()
        if in_definition:
            in_definition = not line.startswith("..")
            continue
        if line.startswith((".\\\"", "'\\\"", "\\\"")):
            continue
        if line.startswith((".", "'")):
            parts = line[1:].strip().split(None, 1)
            if not parts:
                continue
            macro = parts[0]
            if macro in ("de", "de1", "am", "ig"):
                in_definition = True
                continue
            if macro in ("SH", "SS", "Sh", "Ss", "PP", "LP", "P", "Pp", "sp", "br") :
                out.append("")  # paragraph break
            if macro in _ROFF_TEXT_MACROS and len(parts) > 1:
                out.append(parts[1].replace('"', ""))
            continue
        out.append(line)
    text = "\n".join(out)
    for pattern, repl in _ROFF_ESCAPES:
        text = pattern.sub(repl, text)
    return text


# ---- reStructuredText (Python's documentation sources) ---------------------------------------------------------
_RST_ROLE = re.compile(r":[a-zA-Z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`_+")
_RST_LITERAL = re.compile(r"``([^`]*)``")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")
_RST_DIRECTIVE = re.compile(r"^\s*\.\.\s")


def rst_to_text(source: str) -> str:
    """Prose of a reST document: directives and their options, literal blocks and heading underlines removed."""
    out: list[str] = []
    skip_indented = False
    for line in source.splitlines():
        stripped = line.strip()
        if skip_indented:
            if stripped and not line[:1].isspace():
                skip_indented = False
            else:
                continue
        if _RST_DIRECTIVE.match(line) or _RST_UNDERLINE.match(line):
            skip_indented = _RST_DIRECTIVE.match(line) is not None
            continue
        if stripped.endswith("::"):  # an indented literal (code) block follows
            out.append(stripped[:-1])
            skip_indented = True
            continue
        if stripped.startswith((">>>", "...")):
            continue
        out.append(line)
    text = "\n".join(out)
    text = _RST_ROLE.sub(r"\1", text)
    text = _RST_LINK.sub(r"\1", text)
    return _RST_LITERAL.sub(r"\1", text).replace("**", "").replace("*", "")


# ---- MediaWiki (Wikipedia article wikitext) ---------------------------------------------------------------------
_WIKI_CATEGORY = re.compile(r"\[\[Category:([^\]|]+)(?:\|[^\]]*)?\]\]", re.IGNORECASE)
_WIKI_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.DOTALL | re.IGNORECASE)
_WIKI_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_WIKI_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_WIKI_FILE = re.compile(r"\[\[(?:File|Image|[a-z]{2,3}(?:-[a-z]+)?):[^\[\]]*(?:\[\[[^\]]*\]\][^\[\]]*)*\]\]")
_WIKI_LINK = re.compile(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]")
_WIKI_EXTLINK = re.compile(r"\[https?://\S+\s*([^\]]*)\]")
_WIKI_HEADING = re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.MULTILINE)


def wiki_categories(wikitext: str) -> list[str]:
    return [c.strip() for c in _WIKI_CATEGORY.findall(wikitext)]


def _strip_nested(text: str, open_: str, close: str) -> str:
    """Remove possibly nested `open_ ... close` spans (templates `{{ }}`, tables `{| |}`)."""
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith(open_, i):
            depth += 1
            i += len(open_)
        elif depth and text.startswith(close, i):
            depth -= 1
            i += len(close)
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


def wiki_to_text(wikitext: str) -> str:
    """Prose of an article: templates, tables, references, files and categories removed, links reduced to labels."""
    text = _WIKI_REF.sub("", _WIKI_COMMENT.sub("", html.unescape(wikitext)))
    text = _strip_nested(_strip_nested(text, "{{", "}}"), "{|", "|}")
    for pattern, repl in ((_WIKI_CATEGORY, ""), (_WIKI_FILE, ""), (_WIKI_LINK, r"\1"), (_WIKI_EXTLINK, r"\1"),
                          (_WIKI_TAG, ""), (_WIKI_HEADING, r"\1")):
        text = pattern.sub(repl, text)
    text = text.replace("'''", "").replace("''", "")
    lines = [ln.lstrip("*#:; ") for ln in text.splitlines()]
    return "\n".join(ln for ln in lines if not ln.startswith(("|", "!", "__")))
