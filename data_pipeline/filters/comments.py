"""The natural language inside code: comments and docstrings, for the English check on code documents.

`extract_comments(code, lang)` returns the comment texts (markers stripped) in file order, found by a real parser:
tree-sitter with the compiled grammars of `tree-sitter-language-pack` (0.x: the grammars ship inside the wheel,
nothing is downloaded at run time), plus `tree-sitter-batch` and `tree-sitter-less`. Strings that look like comments
are strings; a file that does not parse still gives the comments tree-sitter's error recovery finds. Python
docstrings (module, class, function) count as comments, as `ast.get_docstring` would find them; Jupyter notebooks
give their Markdown cells and the comments of their code cells; `<script>` and `<style>` inside HTML, Vue and Svelte
are parsed as JavaScript/TypeScript and CSS. Language names are the pipeline's (`data_pipeline.sources.languages`).
A language without a grammar (AppleScript) gives [], so its code is kept by the English filter; so does a file whose
parse exceeds its work budget (`_PARSE_CHECKS_PER_BYTE`).
"""
from __future__ import annotations

import inspect
import json
import re
import warnings
from functools import lru_cache

import tree_sitter as ts

# Pipeline language -> grammar: a tree-sitter-language-pack name, or one of EXTRA_GRAMMARS.
GRAMMARS: dict[str, str] = {
    "python": "python", "cython": "python", "javascript": "javascript", "typescript": "typescript", "java": "java",
    "kotlin": "kotlin", "scala": "scala", "groovy": "groovy", "go": "go", "rust": "rust", "c": "c", "cpp": "cpp",
    "c-sharp": "csharp", "f-sharp": "fsharp", "swift": "swift", "objective-c": "objc", "ruby": "ruby", "php": "php",
    "perl": "perl", "lua": "lua", "r": "r", "julia": "julia", "haskell": "haskell", "ocaml": "ocaml",
    "elixir": "elixir", "erlang": "erlang", "clojure": "clojure", "dart": "dart", "shell": "bash",
    "powershell": "powershell", "sql": "sql", "html": "html", "css": "css", "scss": "scss", "less": "less",
    "vue": "vue", "svelte": "svelte", "json": "json", "yaml": "yaml", "toml": "toml", "xml": "xml", "cmake": "cmake",
    "makefile": "make", "protocol-buffer": "proto", "fortran": "fortran", "zig": "zig", "nim": "nim",
    "verilog": "verilog", "systemverilog": "verilog", "vhdl": "vhdl", "assembly": "asm", "tex": "latex",
    "cuda": "cuda", "solidity": "solidity", "elm": "elm", "purescript": "purescript", "racket": "racket",
    "scheme": "scheme", "common-lisp": "commonlisp", "emacs-lisp": "elisp", "vim-script": "vim",
    "batchfile": "batch", "dockerfile": "dockerfile", "starlark": "starlark", "tcl": "tcl",
    # No grammar of their own on PyPI: the nearest one with the same comment and string syntax.
    "awk": "bash", "just": "make",
    "jupyter": "json",  # notebooks: see _notebook
}
# Module names, one grammar each. Perl and Kotlin: the language pack's builds crash the process on deep string
# interpolation (`"${` 85 times: Perl's scanner overruns its 1024-byte state buffer, a segfault; 1025 times: Kotlin's
# aborts); the grammars' own wheels do not.
EXTRA_GRAMMARS = {"batch": "tree_sitter_batch", "less": "tree_sitter_less", "perl": "tree_sitter_perl",
                  "kotlin": "tree_sitter_kotlin"}
# Parse work allowed, in tree-sitter's progress checks (one per 100 parser operations, so the bound is the same on
# any machine and under any load): 1250 for 6000 bytes. 1,870 real files cut at 6000 bytes took at most 283 (Perl;
# the median of most languages under 40, well under 1 ms); hostile nesting took 90,000 (`/*` 3000 times in Swift:
# 100 s; Ruby 27 s) and now stops within 2.5 s (`%q(` in Rust and Java). Past the budget the file gives no comments.
_PARSE_CHECKS_MIN = 50
_PARSE_CHECKS_PER_BYTE = 1 / 5
# Node kinds that are parts of a comment, or not prose: code commented out (`#;(expr)`), SQL's COMMENT ON statement.
_NOT_COMMENTS = re.compile(r"_(marker|content|open|close)$|^(sexp_comment|keyword_comment|comment_statement)$")
_ALSO_COMMENTS = {"marginalia", "pod"}  # SQL's /* */ comments, Perl's POD documentation
_PYTHON_DOCSTRINGS = """
(function_definition body: (block . (string) @doc))
(class_definition body: (block . (string) @doc))
"""
_EMBEDDED = {"script_element": "javascript", "style_element": "css"}  # HTML, Vue and Svelte
_TS_SCRIPT = re.compile(rb"""lang\s*=\s*["']?ts""")
_OPEN = re.compile(r"^(?:=begin\b|=pod\b|/\*+[!<]?|<!--|\{-\|?|\(\*+|#\||#=|#\[|--\[=*\[|%\{|<#|//(?:[/!]<?)?|(?i:@?rem\b|::)|\"(?!\"\")|--+|"
                   r"[#;%!]+)")
_CLOSE = re.compile(r"(?:\n=end|\n=cut|\*+/|-->|-}|\*+\)|\|#|=#|\]=*\]|%}|#>)\s*$")
_CLOSE_LAST = tuple("/>})#]dt")  # the last character of every _CLOSE match (comments come stripped)
_DECORATION = re.compile(r"^\s*(?:[*/!#;%-]+\s?)")  # leading `*` of block lines, `///`, `//!`, `;;`, `##`


def supported(lang: str | None) -> bool:
    return lang is not None and lang.lower() in GRAMMARS


def extract_comments(code: str, lang: str | None) -> list[str]:
    """Comment (and docstring) texts of `code` in file order, markers and decoration stripped, blanks dropped."""
    grammar = GRAMMARS.get(lang.lower()) if lang else None
    if grammar is None or not code:
        return []
    source = code.encode("utf-8", "surrogatepass")
    if lang.lower() == "jupyter":
        return _notebook(source)
    return [text for text in (_clean(c) for c in _raw_comments(source, grammar)) if text]


@lru_cache(maxsize=None)
def _language(grammar: str) -> ts.Language:
    if grammar in EXTRA_GRAMMARS:
        module = __import__(EXTRA_GRAMMARS[grammar])
        with warnings.catch_warnings():  # these wheels hand over an int pointer, which tree-sitter still accepts
            warnings.simplefilter("ignore", DeprecationWarning)
            return ts.Language(module.language())
    from tree_sitter_language_pack import get_language

    return get_language(grammar)


@lru_cache(maxsize=None)
def _parser_and_query(grammar: str) -> tuple[ts.Parser, ts.Query]:
    language = _language(grammar)
    kinds = {language.node_kind_for_id(i) for i in range(language.node_kind_count)
             if language.node_kind_is_named(i) and language.node_kind_is_visible(i)}
    comments = sorted(k for k in kinds if k and ("comment" in k.lower() and not _NOT_COMMENTS.search(k)
                                                 or k in _ALSO_COMMENTS))
    pattern = "[" + " ".join(f"({k})" for k in comments) + "] @comment\n"
    if grammar == "python":
        pattern += _PYTHON_DOCSTRINGS
    if grammar in ("html", "vue", "svelte"):
        pattern += "\n".join(f"({k}) @{k}" for k in _EMBEDDED if k in kinds)
    return ts.Parser(language), ts.Query(language, pattern)


def _parse(parser: ts.Parser, source: bytes) -> ts.Tree | None:
    """The syntax tree, or None when the parse exceeds its work budget."""
    budget = _PARSE_CHECKS_MIN + len(source) * _PARSE_CHECKS_PER_BYTE
    checks = 0

    def over_budget(*_state) -> bool:
        nonlocal checks
        checks += 1
        return checks > budget

    try:  # the progress callback is only called when the source is read through a callback
        return parser.parse(lambda byte, _point: source[byte:], progress_callback=over_budget)
    except ValueError:  # "Parsing failed": cancelled by over_budget
        parser.reset()  # else the next parse would resume this one
        return None


def _raw_comments(source: bytes, grammar: str) -> list[str]:
    parser, query = _parser_and_query(grammar)
    tree = _parse(parser, source)
    if tree is None:
        return []
    root = tree.root_node
    found: list[tuple[int, str]] = []
    last_end = -1
    nodes = [(node, name) for name, group in ts.QueryCursor(query).captures(root).items() for node in group]
    for node, name in sorted(nodes, key=lambda item: item[0].start_byte):
        if node.start_byte < last_end:
            continue  # a part of a comment already taken (Rust's doc_comment inside its line_comment)
        last_end = node.end_byte
        text = source[node.start_byte:node.end_byte]
        if name == "comment":
            if node.start_byte == 0 and text.startswith(b"#!"):
                continue  # shebang
            found.append((node.start_byte, text.decode("utf-8", "replace")))
        elif name == "doc":
            found.append((node.start_byte, _docstring(node, source)))
        else:
            found.extend(_embedded(node, source, _EMBEDDED[name]))
    if grammar == "python":
        found.extend(_module_docstring(root, source))
    return [text for _, text in sorted(found, key=lambda item: item[0])]


def _docstring(node: ts.Node, source: bytes) -> str:
    """The docstring's body, indentation removed the way `ast.get_docstring(clean=True)` does."""
    body = source[node.children[0].end_byte:node.children[-1].start_byte] if node.child_count >= 2 else b""
    return inspect.cleandoc(body.decode("utf-8", "replace"))


def _module_docstring(root: ts.Node, source: bytes) -> list[tuple[int, str]]:
    """The first statement when it is a string (comments before it do not count as statements)."""
    first = next((child for child in root.named_children if child.type != "comment"), None)
    return [(first.start_byte, _docstring(first, source))] if first is not None and first.type == "string" else []


def _embedded(element: ts.Node, source: bytes, grammar: str) -> list[tuple[int, str]]:
    """Comments of a <script> or <style> element's body, parsed with its own grammar."""
    body = next((c for c in element.children if c.type == "raw_text"), None)
    if body is None:
        return []
    start_tag = source[element.start_byte:body.start_byte]
    if grammar == "javascript" and _TS_SCRIPT.search(start_tag):
        grammar = "typescript"
    return [(body.start_byte, text) for text in _raw_comments(source[body.start_byte:body.end_byte], grammar)]


def _clean(comment: str) -> str:
    comment = _OPEN.sub("", comment.strip(), count=1)
    if comment.endswith(_CLOSE_LAST):  # _CLOSE tries every position of the comment: only where it can match
        comment = _CLOSE.sub("", comment)
    lines = [_DECORATION.sub("", line).strip() for line in comment.splitlines()]
    return "\n".join(line for line in lines if line)


_NOTEBOOK_CELLS = """
(object (pair key: (string (string_content) @key) value: (string (string_content) @type))
        (pair key: (string (string_content) @source_key) value: (_) @source)
 (#eq? @key "cell_type") (#eq? @source_key "source"))
"""


@lru_cache(maxsize=1)
def _notebook_query() -> ts.Query:
    return ts.Query(_language("json"), _NOTEBOOK_CELLS)


def _notebook(source: bytes) -> list[str]:
    """Markdown cells as they are, code cells' comments (nbformat's keys are sorted: cell_type comes before source).
    Parsed with the JSON grammar, not `json.loads`, so a notebook cut at `english.code_scan_chars` still gives the
    cells it holds whole."""
    tree = _parse(_parser_and_query("json")[0], source)
    out: list[str] = []
    for _, match in ts.QueryCursor(_notebook_query()).matches(tree.root_node) if tree else ():
        cell_type, value = match["type"][0], match["source"][0]
        strings = [value] if value.type == "string" else [c for c in value.named_children if c.type == "string"]
        try:
            text = "".join(json.loads(source[s.start_byte:s.end_byte]) for s in strings)
        except ValueError:
            continue
        if cell_type.text == b"markdown":
            out.extend([text.strip()] if text.strip() else [])
        elif cell_type.text == b"code":
            out.extend(extract_comments(text, "python"))
    return out
