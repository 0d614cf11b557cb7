"""Comment and docstring extraction (tree-sitter) for the English check on code: real snippets in many languages,
strings that look like comments, nested and doc comments, broken code, and grammars that load with no network."""
import subprocess
import sys

import pytest

from data_pipeline.filters.comments import GRAMMARS, extract_comments, supported
from data_pipeline.sources.languages import CODE_EXTENSIONS, CODE_FILENAMES, SHEBANG_INTERPRETERS


def test_python_comments_and_docstrings_not_strings():
    code = '''#!/usr/bin/env python
# Licensed under the Apache License.
"""Module docstring: parse the configuration file."""
URL = "http://example.com/#anchor"  # the service address
"""A string statement later on is no docstring."""


class Config:
    """Sections of one file.

        Indented details.
    """

    @staticmethod
    def load(path):
        r"""Read the file at path and return its sections."""
        text = '# not a comment'
        return text  # done
'''
    assert extract_comments(code, "python") == [
        "Licensed under the Apache License.", "Module docstring: parse the configuration file.",
        "the service address", "Sections of one file.\nIndented details.",
        "Read the file at path and return its sections.", "done"]


def test_python_that_does_not_parse_still_gives_its_comments():
    code = 'def broken(:\n    """Doc of the broken one."""\n    x = "# inside a string"  # the real comment\n'
    found = extract_comments(code, "python")
    assert "the real comment" in found and not any("inside a string" in c for c in found)


def test_c_family_line_and_block_comments_skip_strings():
    code = '''/*
 * Copyright notice and a description
 * of the whole file.
 */
#include <stdio.h>
int main(void) {
    printf("http://example.com /* not a comment */\\n"); // print the address
    char c = '"'; /* a quote character */
    return 0;
}
'''
    assert extract_comments(code, "c") == ["Copyright notice and a description\nof the whole file.",
                                           "print the address", "a quote character"]


def test_c_with_a_parse_error_keeps_the_comments_around_it():
    code = "int f(int x { /* unclosed parameter list */\n  return x; // after the error\n}\n// last words\n"
    assert extract_comments(code, "c") == ["unclosed parameter list", "after the error", "last words"]


def test_cpp_doc_comments_and_raw_strings():
    code = ('/** Adds two numbers.\n * @param a the first\n */\nint add(int a, int b);  ///< trailing doc\n'
            'auto s = R"(/* raw, not a comment */)";\n')
    assert extract_comments(code, "cpp") == ["Adds two numbers.\n@param a the first", "trailing doc"]


def test_java_javadoc_and_char_literals():
    code = '/** Javadoc of Greeter. */\nclass Greeter { String s = "/* no */"; // tail\n  char q = \'"\'; /* quote */ }\n'
    assert extract_comments(code, "java") == ["Javadoc of Greeter.", "tail", "quote"]


def test_javascript_regex_and_template_literals_are_not_comments():
    code = ("const re = /\\/\\/ not a comment/; const t = `// template ${a /* inside the hole */}`;\n"
            "// a real comment\n/** @returns nothing */\nfunction f() {}\n")
    assert extract_comments(code, "javascript") == ["inside the hole", "a real comment", "@returns nothing"]


def test_typescript_generics_and_types():
    code = ('interface Point { x: number } // the shape\nconst id = <T,>(v: T): T => v; /* generic arrow */\n'
            'let s: string = "// no";\n')
    assert extract_comments(code, "typescript") == ["the shape", "generic arrow"]


def test_go_raw_strings_and_broken_code():
    code = 'package m\n// Package m does things.\nvar s = `/* raw */`\n/* block */\nfunc f( { // broken here\n'
    assert extract_comments(code, "go") == ["Package m does things.", "block", "broken here"]


def test_rust_nested_block_doc_comments_and_lifetimes():
    code = ("//! Crate documentation.\n/// Item documentation.\n"
            "fn first<'a>(x: &'a str) -> &'a str { x } /* outer /* nested */ still outer */\n"
            'let s = "// no"; let r = r#"/* no */"#;\n')
    assert extract_comments(code, "rust") == ["Crate documentation.", "Item documentation.",
                                              "outer /* nested */ still outer"]


def test_ruby_interpolation_and_begin_end_blocks():
    code = '# top comment\ns = "#{x} # not a comment"\n=begin\nblock documentation\n=end\nputs s # tail\n'
    assert extract_comments(code, "ruby") == ["top comment", "block documentation", "tail"]


def test_php_three_comment_styles():
    code = "<?php\n// one\n# two\n$s = '/* no */'; /** Doc block. */\necho \"# no\";\n"
    assert extract_comments(code, "php") == ["one", "two", "Doc block."]


def test_shell_hashes_inside_words_strings_and_expansions():
    code = ('#!/bin/sh\n# set things up\necho "# no" \'# no\' # yes\nx=${y#prefix} # strip the prefix\n'
            "n=$((1 + 2))#not\n")
    assert extract_comments(code, "shell") == ["set things up", "yes", "strip the prefix"]


def test_sql_strings_quoted_names_and_block_comments():
    code = "SELECT '--x', \"a--b\" FROM t; -- count the rows\n/* block\n comment */\nSELECT 1;\n"
    assert extract_comments(code, "sql") == ["count the rows", "block\ncomment"]


def test_nested_comments_in_kotlin_haskell_ocaml_lua():
    assert extract_comments('/* outer /* nested */ end */\nval s = "// no" // yes\n', "kotlin") == [
        "outer /* nested */ end", "yes"]
    assert extract_comments('{- block {- nested -} -}\nmain = putStrLn "-- no" -- yes\n', "haskell") == [
        "block {- nested -}", "yes"]
    assert extract_comments('(* comment (* nested *) *)\nlet s = "(* no *)"\n', "ocaml") == ["comment (* nested *)"]
    assert extract_comments('local s = "--" --[[ block\ncomment ]] -- line\n', "lua") == ["block\ncomment", "line"]


def test_markup_and_embedded_scripts():
    html = "<p>text <!-- a remark --></p><script>// js comment\nvar s='<!-- no -->';</script><style>/* css */</style>"
    assert extract_comments(html, "html") == ["a remark", "js comment", "css"]
    vue = ('<template><div><!-- template note --></div></template>\n<script lang="ts">\n// typed script\n'
           "const x: number = 1;\n</script>\n")
    assert extract_comments(vue, "vue") == ["template note", "typed script"]


def test_more_families():
    assert extract_comments("(defn f [x] x) ; the identity\n", "clojure") == ["the identity"]
    assert extract_comments("@echo off\nREM first\n:: second\necho REM no\n", "batchfile") == ["first", "second"]
    assert extract_comments("% comment\nX = \"% no\".\n", "erlang") == ["comment"]
    assert extract_comments("a: '# no' # yes\n", "yaml") == ["yes"]
    assert extract_comments("<# block #>\n# line\n$s = '# no'\n", "powershell") == ["block", "line"]
    assert extract_comments("% a comment\n\\section{A} 50\\% no\n", "tex") == ["a comment"]
    assert extract_comments('" vim comment\nlet x = "no"\n', "vim-script") == ["vim comment"]


def test_jupyter_markdown_cells_and_code_comments_even_when_cut():
    nb = ('{"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Title\\n", "Some prose."]}, '
          '{"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [], '
          '"source": ["# a comment\\n", "x = \\"# no\\""]}], "nbformat": 4}')
    assert extract_comments(nb, "jupyter") == ["# Title\nSome prose.", "a comment"]
    assert extract_comments(nb[: nb.index('{"cell_type": "code"') + 30], "jupyter") == ["# Title\nSome prose."]


def test_every_recognised_language_has_a_grammar():
    recognised = set(CODE_EXTENSIONS.values()) | set(CODE_FILENAMES.values()) | set(SHEBANG_INTERPRETERS.values())
    assert recognised - set(GRAMMARS) == {"applescript"}  # no tree-sitter grammar for it on PyPI
    assert supported("Python") and supported("json") and not supported("applescript") and not supported(None)
    assert extract_comments("# looks like a comment", "brainfuck") == []
    assert extract_comments("# looks like a comment", None) == []


def test_grammars_load_with_the_network_cut():
    """Every grammar comes from the installed wheels: any connection attempt fails the child process."""
    child = (
        "import socket\n"
        "def refuse(*a, **k): raise SystemExit('network used')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "from data_pipeline.filters.comments import GRAMMARS, _parser_and_query\n"
        "for g in sorted(set(GRAMMARS.values())): _parser_and_query(g)\n"
        "print('ok', len(set(GRAMMARS.values())))\n")
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", str(len(set(GRAMMARS.values())))]


@pytest.mark.parametrize("lang", sorted(set(GRAMMARS)))
def test_no_language_crashes_on_garbage(lang):
    garbage = "\x00}{ /* \"' <!-- (* #| --[[ \n" * 3 + "\ud800 é 中文"
    assert isinstance(extract_comments(garbage, lang), list)


# Code that blew up a parser: deep string interpolation crashed the process (Perl: segfault; Kotlin: abort), and
# nesting that tree-sitter's error recovery cannot settle took 100 s for 6000 characters (Swift).
HOSTILE = [("perl", '"${' * 100), ("perl", '${`' * 2000), ("kotlin", '"${' * 1100), ("swift", "/*" * 3000),
           ("ruby", "<!--" * 1500), ("java", "%q(" * 2000)]


@pytest.mark.parametrize("lang,code", HOSTILE, ids=[f"{lang}-{code[:4]}" for lang, code in HOSTILE])
def test_hostile_nesting_neither_crashes_nor_hangs(lang, code):
    child = ("import sys, time\nfrom data_pipeline.filters.comments import extract_comments\n"
             "t = time.process_time()\n"
             "out = extract_comments(sys.stdin.read() + '\\n// a comment in English\\n', sys.argv[1])\n"
             "print(isinstance(out, list), round(time.process_time() - t, 2))\n")
    done = subprocess.run([sys.executable, "-c", child, lang], input=code, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    ok, seconds = done.stdout.split()
    assert ok == "True" and float(seconds) < 6, done.stdout  # 6000 characters of real code parse in under 1 ms


def test_a_long_real_file_keeps_its_comments_under_the_parse_budget():
    import inspect
    import tokenize

    source = inspect.getsource(tokenize)  # 25 kB of real Python, well under its budget
    comments = extract_comments(source, "python")
    assert len(comments) > 50 and comments[0].startswith("Tokenization help for Python programs.")
