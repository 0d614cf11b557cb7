"""Which files are code (and in which language), which are natural-language text, from name and shebang."""
from __future__ import annotations

import re

# Extension -> programming language (names as The Stack uses them, lower-case).
CODE_EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyx": "cython", ".ipynb": "jupyter",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".java": "java", ".kt": "kotlin", ".kts": "kotlin",
    ".scala": "scala", ".groovy": "groovy", ".go": "go", ".rs": "rust", ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".cs": "c-sharp", ".fs": "f-sharp", ".swift": "swift", ".m": "objective-c", ".mm": "objective-c",
    ".rb": "ruby", ".php": "php", ".pl": "perl", ".pm": "perl", ".lua": "lua", ".r": "r", ".jl": "julia",
    ".hs": "haskell", ".ml": "ocaml", ".mli": "ocaml", ".ex": "elixir", ".exs": "elixir", ".erl": "erlang",
    ".clj": "clojure", ".dart": "dart", ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".fish": "shell",
    ".ps1": "powershell", ".sql": "sql", ".html": "html", ".htm": "html", ".css": "css", ".scss": "scss",
    ".less": "less", ".vue": "vue", ".svelte": "svelte", ".json": "json", ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml", ".xml": "xml", ".cmake": "cmake", ".mk": "makefile", ".proto": "protocol-buffer",
    ".f90": "fortran", ".f": "fortran", ".zig": "zig", ".nim": "nim", ".v": "verilog", ".sv": "systemverilog",
    ".vhd": "vhdl", ".asm": "assembly", ".s": "assembly", ".tex": "tex", ".cu": "cuda", ".cuh": "cuda",
    ".sol": "solidity", ".elm": "elm", ".purs": "purescript", ".rkt": "racket", ".scm": "scheme",
    ".lisp": "common-lisp", ".el": "emacs-lisp", ".vim": "vim-script", ".bat": "batchfile", ".gradle": "groovy",
}
CODE_FILENAMES: dict[str, str] = {
    "makefile": "makefile", "gnumakefile": "makefile", "dockerfile": "dockerfile", "cmakelists.txt": "cmake",
    "rakefile": "ruby", "gemfile": "ruby", "build": "starlark", "build.bazel": "starlark", "justfile": "just",
}
# Natural-language documents: subject to the English and topic filters, not to the licence filter.
TEXT_EXTENSIONS = {".md": "markdown", ".markdown": "markdown", ".rst": "restructuredtext", ".txt": "text",
                   ".adoc": "asciidoc", ".org": "org"}
SHEBANG_INTERPRETERS: dict[str, str] = {
    "python": "python", "python2": "python", "python3": "python", "sh": "shell", "bash": "shell", "zsh": "shell",
    "dash": "shell", "ksh": "shell", "fish": "shell", "node": "javascript", "nodejs": "javascript", "deno": "typescript",
    "ruby": "ruby", "perl": "perl", "php": "php", "lua": "lua", "rscript": "r", "julia": "julia", "tclsh": "tcl",
    "awk": "awk", "gawk": "awk", "pwsh": "powershell", "osascript": "applescript",
}
_SHEBANG = re.compile(r"^#!\s*(\S+)(?:\s+(\S+))?")


def shebang_language(first_line: str) -> str | None:
    """`#!/usr/bin/env python3 -u` -> "python"; None when the line is not a known shebang."""
    match = _SHEBANG.match(first_line)
    if not match:
        return None
    program = match.group(1).rsplit("/", 1)[-1]
    if program == "env" and match.group(2):
        program = match.group(2)
    program = re.sub(r"[\d.]+$", "", program.lower()) or program.lower()
    return SHEBANG_INTERPRETERS.get(program) or SHEBANG_INTERPRETERS.get(program + "3")


def classify_name(name: str) -> tuple[str, str] | None:
    """(kind, lang) from the file name alone: ("code", "python"), ("text", "markdown"); None when unknown."""
    lower = name.lower()
    if lower in CODE_FILENAMES:
        return "code", CODE_FILENAMES[lower]
    dot = lower.rfind(".")
    ext = lower[dot:] if dot > 0 else ""
    if ext in CODE_EXTENSIONS:
        return "code", CODE_EXTENSIONS[ext]
    if ext in TEXT_EXTENSIONS:
        return "text", TEXT_EXTENSIONS[ext]
    return None


def classify(name: str, head: str) -> tuple[str, str] | None:
    """Name first, then the shebang of an extension-less script."""
    found = classify_name(name)
    if found is not None:
        return found
    if head.startswith("#!"):
        lang = shebang_language(head.split("\n", 1)[0])
        if lang:
            return "code", lang
    return None
