"""What a user with messy files or values gives refact-eval: each is refused with a message naming the file, the record
or the key (and before the model is loaded where it can be), never a traceback, a silently wrong number or a lost
result."""
import gzip
import json

import pytest

from evals.humaneval import load_problems

RECORD = {"task_id": "T/0", "prompt": "def f(x):\n    \"\"\"x\"\"\"\n", "canonical_solution": "    return x\n",
          "test": "def check(candidate):\n    assert candidate(1) == 1\n", "entry_point": "f"}


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


@pytest.mark.parametrize("text, match", [
    (jsonl("not json"), r"data\.jsonl:1: not a JSON record"),
    (jsonl(RECORD, [1, 2]), r"data\.jsonl:2: a HumanEval record is a JSON object, found list"),
    (jsonl({**RECORD, "prompt": 5}), r":1: field 'prompt' must be a string, found int"),
    (jsonl({**RECORD, "entry_point": "not a name"}), r":1: entry_point 'not a name' is not a Python name"),
    (jsonl({**RECORD, "test": "def check(c):\n    assert (\n"}), r":1: the test of T/0 does not compile"),
    (jsonl({**RECORD, "prompt": RECORD["prompt"] + "\x00"}), r":1: the prompt of T/0 does not compile"),
    (jsonl({**RECORD, "test": "def chek(candidate):\n    pass\n"}), r":1: the test of T/0 defines no check"),
    (jsonl(RECORD, {**RECORD, "entry_point": "g"}), r":2: task_id 'T/0' again \(first on line 1\)"),
    ("\n\n", r"data\.jsonl: no HumanEval problems"),
], ids=["json", "list", "type", "entry_point", "test_syntax", "prompt_nul", "no_check", "duplicate", "empty"])
def test_a_bad_problem_file_is_named_by_line(tmp_path, text, match):
    # before: a traceback (a list row, a number as prompt), json's message alone, a checker error that stopped scoring
    # in the middle (no check, syntax), or a silent result (a duplicate id merged two problems' samples, an empty file
    # reported pass@k null with exit 0)
    path = tmp_path / "data.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_problems(path)


def test_an_unreadable_problem_file_is_named(tmp_path):
    not_gzip = tmp_path / "data.jsonl.gz"
    not_gzip.write_text(jsonl(RECORD))  # gzip.BadGzipFile (an OSError): a traceback before
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(jsonl(RECORD, RECORD).encode())[:-12])
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(json.dumps({**RECORD, "prompt": "# caf\u00e9\n" + RECORD["prompt"]}, ensure_ascii=False)
                       .encode("latin-1"))
    for path in (not_gzip, truncated, latin1):
        with pytest.raises(ValueError, match=rf"{path.name}: not a readable HumanEval JSONL"):
            load_problems(path)
    assert [p.task_id for p in load_problems(_write(tmp_path / "ok.jsonl", jsonl(RECORD)))] == ["T/0"]


def _write(path, text):
    path.write_text(text)
    return path
