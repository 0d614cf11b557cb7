"""Comment and docstring extraction for the English check on code."""
from data_pipeline.filters.comments import extract_comments, supported


def test_python_comments_and_docstrings_not_strings():
    code = '''#!/usr/bin/env python
"""Module docstring: parse the configuration file."""
URL = "http://example.com/#anchor"  # the service address


def load(path):
    """Read the file at path and return its sections."""
    text = '# not a comment'
    return text  # done
'''
    found = extract_comments(code, "python")
    assert "Module docstring: parse the configuration file." in found
    assert "Read the file at path and return its sections." in found
    assert "the service address" in found and "done" in found
    assert not any("anchor" in c or "not a comment" in c or "usr/bin" in c for c in found)


def test_python_that_does_not_parse_falls_back_to_the_scanner():
    code = 'def broken(:\n    x = "# inside a string"  # the real comment\n'
    assert extract_comments(code, "python") == ["the real comment"]


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
    found = extract_comments(code, "c")
    assert found == ["Copyright notice and a description\nof the whole file.", "print the address",
                     "a quote character"]


def test_rust_lifetimes_are_not_strings():
    code = "fn first<'a>(x: &'a str) -> &'a str { x } // returns the first word\n/// Doc comment of the item.\n"
    assert extract_comments(code, "rust") == ["returns the first word", "Doc comment of the item."]


def test_dash_hash_lisp_and_markup_families():
    assert extract_comments("SELECT '--x' FROM t; -- count the rows\n", "sql") == ["count the rows"]
    assert extract_comments("local s = \"--\" --[[ block\ncomment ]] -- line\n", "lua") == ["block\ncomment", "line"]
    assert extract_comments("echo '#no' # yes\n", "shell") == ["yes"]
    assert extract_comments("(defn f [x] x) ; the identity\n", "clojure") == ["the identity"]
    assert extract_comments("<p>text</p><!-- a remark -->", "html") == ["a remark"]


def test_unknown_language_gives_nothing():
    assert extract_comments("# looks like a comment", "brainfuck") == []
    assert extract_comments("# looks like a comment", None) == []
    assert supported("Python") and supported("cpp") and not supported("json") and not supported(None)
