"""What a user with messy files or values gives refact-eval: each is refused with a message naming the file, the record
or the key (and before the model is loaded where it can be), never a traceback, a silently wrong number or a lost
result."""
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
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
    # was: "generate: every prompt needs at least one token" after the model had loaded, naming no task nor file
    (jsonl(RECORD, {**RECORD, "task_id": "T/1", "prompt": ""}), r"data\.jsonl:2: the prompt of T/1 is empty"),
    (jsonl({**RECORD, "prompt": " \n\t\u00a0\n"}), r"data\.jsonl:1: the prompt of T/0 is only whitespace"),
], ids=["json", "list", "type", "entry_point", "test_syntax", "prompt_nul", "no_check", "duplicate", "empty",
        "blank_prompt", "whitespace_prompt"])
def test_a_bad_problem_file_is_named_by_line(tmp_path, text, match):
    # before: a traceback (a list row, a number as prompt), json's message alone, a checker error that stopped scoring
    # in the middle (no check, syntax), or a silent result (a duplicate id merged two problems' samples, an empty file
    # reported pass@k null with exit 0)
    path = tmp_path / "data.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_problems(path)


def test_a_blank_prompt_stops_refact_eval_before_the_model_loads(tmp_path):
    from evals.cli import compose_config, run

    data = _write(tmp_path / "mine.jsonl", jsonl(RECORD, {**RECORD, "task_id": "T/1", "prompt": ""}))
    for task in ("humaneval", "humaneval_chat", "humaneval_infill"):
        cfg = compose_config([f"model={tmp_path / 'absent'}", f"out={tmp_path / 'r.json'}", f"tasks=[{task}]",
                              f"{task}.data={data}"])
        with pytest.raises(ValueError, match=r"mine\.jsonl:2: the prompt of T/1 is empty"):  # the model: never loaded
            run(cfg)


def test_refact_generate_names_an_empty_prompt_before_the_model_loads(tmp_path):
    """Was "refact-generate: generate: every prompt needs at least one token", after loading the model."""
    from hydra import compose, initialize_config_dir

    from data_pipeline.config import config_dir
    from refact_train.cli.generate import options

    def read(*overrides):
        with initialize_config_dir(config_dir=str(Path(config_dir()) / "generate"), version_base=None):
            return options(compose("generate", overrides=[f"model={tmp_path / 'absent'}", *overrides]))

    for given in (["prompt=''"], []):  # "" is also the default
        with pytest.raises(ValueError, match=r"^prompt= is empty: mode=plain continues the text of prompt="):
            read(*given)
    assert read("prompt=' '").prompt == " "  # whitespace is text to continue
    assert read("mode=chat").prompt == ""  # the chat template is the prompt's tokens
    proc = subprocess.run([sys.executable, "-m", "refact_train.cli.generate", f"model={tmp_path / 'absent'}",
                           "prompt=''"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("refact-generate: prompt= is empty"), proc.stderr


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


OUT_OF_RANGE = [
    ("limit=0", r"limit=0: expected an integer >= 1"),  # ran every problem (0 is falsy)
    ("limit=-1", r"limit=-1: expected an integer >= 1"),  # ran all but the last
    ("humaneval.num_samples=0", r"humaneval.num_samples=0"),  # pass@k null for "0 problems", exit 0
    ("humaneval.num_samples=-3", r"humaneval.num_samples=-3"),
    ("humaneval.k=[1,0]", r"humaneval.k=\[1, 0\]: expected integers >= 1"),  # only after generating and scoring
    ("generation.batch_size=0", r"generation.batch_size=0"),  # "range() arg 3 must not be zero", after loading
    ("+generation.tempreature=0.5", r"generation: unknown key\(s\) \['tempreature'\]"),  # a TypeError traceback
    ("perplexity.context=1", r"perplexity.context=1: expected an integer >= 2"),  # ZeroDivisionError traceback
    ("perplexity.max_windows=-1", r"perplexity.max_windows=-1"),  # all windows but the last
    ("heldout_fim.samples_per_document=0", r"heldout_fim.samples_per_document=0"),
    ("humaneval_infill.data=/nonexistent.jsonl", r"HumanEval data not found at /nonexistent.jsonl"),  # after humaneval
    # KeyError / IndexError tracebacks at the first problem, after the model had loaded
    ("humaneval_chat.query='Solve {task}'", r"humaneval_chat.query='Solve \{task\}': not a format string .*KeyError"),
    ("humaneval_chat.query='f() {} {prompt}'", r"humaneval_chat.query=.*IndexError"),
    ("humaneval_chat.query='dict {prompt'", r"humaneval_chat.query=.*ValueError"),
]


def refused_before_the_model_loads(tmp_path, override: str, match: str, errors=(ValueError, FileNotFoundError)):
    """refact-eval with every task and `override` raises `errors` matching `match`; the model path does not exist,
    so it was never loaded, and no result is written."""
    from evals.cli import compose_config, run

    cfg = compose_config([f"model={tmp_path / 'absent'}", f"data={tmp_path}", f"out={tmp_path / 'r.json'}",
                          "tasks=[humaneval,humaneval_chat,humaneval_infill,heldout_fim,perplexity]", override])
    with pytest.raises(errors, match=match):
        run(cfg)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("override, match", OUT_OF_RANGE, ids=[o for o, _ in OUT_OF_RANGE])
def test_out_of_range_values_are_refused_before_the_model_loads(tmp_path, override, match):
    refused_before_the_model_loads(tmp_path, override, match)


def test_a_count_of_a_task_not_run_is_not_checked(tmp_path):
    from omegaconf import OmegaConf

    from evals.cli import compose_config
    from evals.eval_config import eval_options

    eval_options(OmegaConf.to_container(compose_config(["model=x", "tasks=[humaneval]", "perplexity.batch_size=0"])))


def one_token_split(model_dir, data_dir, heldout_from=None):
    """A pipeline dir whose valid split is one empty document (its EOT alone), and a copy of another's heldout/."""
    from data_pipeline.shards import write_shards
    from data_pipeline.tokenizer import load_tokenizer

    write_shards(data_dir / "shards", {"train": [[5, 6, 7]], "valid": [[]]}, load_tokenizer(model_dir), progress=False)
    if heldout_from is not None:
        shutil.copytree(heldout_from / "heldout", data_dir / "heldout")
    return data_dir


def test_perplexity_on_a_split_with_nothing_to_predict(tiny_model_dir, tmp_path, one_thread):
    # ZeroDivisionError (a traceback) before
    from evals.cli import compose_config, run

    cfg = compose_config([f"model={tiny_model_dir}", f"data={one_token_split(tiny_model_dir, tmp_path)}",
                          "tasks=[perplexity]",                          f"out={tmp_path / 'r.json'}"])
    with pytest.raises(ValueError, match=r"shards/manifest.json: the valid split \(1 tokens\) has no window"):
        run(cfg)


def test_an_output_path_that_cannot_be_written_is_refused_before_the_model_loads(tmp_path):
    # each was a traceback after every task had run (IsADirectoryError, NotADirectoryError), or a lost result (the
    # JSON written to NAME.md, then overwritten by the table)
    from evals.cli import compose_config, run

    (tmp_path / "adir.json").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "r_samples").write_text("x")
    for out, match in ((tmp_path / "adir.json", r"adir.json is a directory"),
                       (tmp_path / "afile" / "sub" / "r.json", r"cannot create .*afile/sub \(Not a directory\)"),
                       (tmp_path / "afile" / "r.json", r"afile is a file, not a directory"),
                       (tmp_path / "r.md", r"r.md: the Markdown table goes beside FILE"),
                       (tmp_path / "r.json", r"r_samples, where the per-sample files go, is a file")):
        with pytest.raises(ValueError, match=match):
            run(compose_config([f"model={tmp_path / 'absent'}", f"out={out}", "tasks=[humaneval]"]))


def test_a_rerun_into_the_same_output_replaces_the_whole_result(tiny_model_dir, pipeline_dir, tmp_path, one_thread):
    # the second run's samples directory held the first run's heldout_fim file beside its own perplexity result
    from evals.cli import compose_config, run

    out = tmp_path / "r.json"
    common = [f"model={tiny_model_dir}", f"data={pipeline_dir}", f"out={out}", "limit=1", "cpu_threads=1",
              "heldout_fim.max_new_tokens=2", "heldout_fim.samples_per_document=1"]
    run(compose_config(common + ["tasks=[heldout_fim]"]))
    assert [p.name for p in (tmp_path / "r_samples").iterdir()] == ["heldout_fim_samples.jsonl"]
    run(compose_config(common + ["tasks=[perplexity]"]))
    assert list(json.loads(out.read_text())["tasks"]) == ["perplexity"]
    assert not (tmp_path / "r_samples").exists()  # perplexity writes no samples: nothing of the first run is left
    broken = one_token_split(tiny_model_dir, tmp_path / "broken", heldout_from=pipeline_dir)
    with pytest.raises(ValueError, match="valid split"):  # a run that fails after a task wrote samples
        run(compose_config(common + ["tasks=[heldout_fim,perplexity]", f"data={broken}"]))
    assert list(json.loads(out.read_text())["tasks"]) == ["perplexity"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "r.json", "r.md"]  # leaves the earlier result whole


@pytest.mark.parametrize("text", [pa.array([None], pa.string()), pa.array([5])], ids=["null", "int"])
def test_a_heldout_record_without_text_is_named(tiny_model_dir, tmp_path, text):
    # AttributeError: 'NoneType' (or 'int') object has no attribute 'splitlines', a traceback, before; the trainer's
    # validation reads the same records through data_pipeline.heldout_fim.load_heldout_documents
    from evals.cli import compose_config, run

    (tmp_path / "heldout").mkdir()
    pq.write_table(pa.table({"id": ["doc7"], "text": text, "kind": ["code"]}), tmp_path / "heldout" / "h.parquet")
    cfg = compose_config([f"model={tiny_model_dir}", f"data={tmp_path}", "tasks=[heldout_fim]",
                          f"out={tmp_path / 'r.json'}"])
    with pytest.raises(ValueError, match=r"heldout/h.parquet: record 'doc7' has a text of type .*, not a string"):
        run(cfg)


def test_a_tokenizer_larger_than_the_model_is_refused(tiny_model_dir, tmp_path):
    # before: "IndexError: index out of range in self" from the embedding mid-generation once an id past 512 came
    # up (refact-eval tokenizer=... on a real model), or a run that scored nonsense when none did (this prompt)
    from data_pipeline.tokenizer import train_bpe
    from evals.cli import compose_config, run

    train_bpe([f"def f{i}(x):\n    return x * {i}\n" for i in range(500)], vocab_size=1024, min_frequency=1) \
        .save(tmp_path / "tok")
    cfg = compose_config([f"model={tiny_model_dir}", f"tokenizer={tmp_path / 'tok'}", "tasks=[humaneval]", "limit=1",
                          f"out={tmp_path / 'r.json'}"])
    with pytest.raises(ValueError, match=r"tok.* has \d+ tokens, more than the 512 embedding rows"):  # models.py
        run(cfg)


def test_a_tokenizer_of_the_same_size_but_another_vocabulary_is_refused(tiny_model_dir, tmp_path, one_thread):
    """The model's embedding has room for it, so it ran: every prompt reached the model as other ids than it learnt,
    and each pass@k or perplexity was a number about nothing."""
    import sysconfig
    from pathlib import Path
    from data_pipeline.tokenizer import load_tokenizer, train_bpe
    from evals.cli import compose_config, run
    own = load_tokenizer(tiny_model_dir)
    root = Path(sysconfig.get_paths()["stdlib"]) / "json"
    other = train_bpe([p.read_text() for p in sorted(root.glob("*.py"))], vocab_size=own.vocab_size)
    other.save(tmp_path / "tok")
    common = [f"model={tiny_model_dir}", f"out={tmp_path / 'r.json'}", "tasks=[humaneval]", "limit=1",
              f"tokenizer={tmp_path / 'tok'}"]
    with pytest.raises(ValueError, match=rf"{tmp_path}/tok/tokenizer.json .* is not the tokenizer {tiny_model_dir} "
                                         rf"was trained with \({tiny_model_dir}/tokenizer.json"):
        run(compose_config(common))
    assert not (tmp_path / "r.json").exists()
