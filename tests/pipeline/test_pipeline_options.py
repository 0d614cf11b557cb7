"""refact-pipeline's top-level keys are typed: a wrong type or an unknown key stops with one line naming it, exit 2,
before any work (they were read raw: a truthy string turned an option on, a misspelt key was ignored)."""
import pytest

from data_pipeline.cli import compose_config, main

BAD = [
    ("progress=no", "config.progress: expected true or false, got 'no'"),  # the bars were shown
    ("keep_intermediate='false'", "config.keep_intermediate: expected true or false, got 'false'"),  # kept
    ("+worker=4", "config: unknown key(s) ['worker']"),  # every CPU used, silently
    ("+keep_intermediates=false", "config: unknown key(s) ['keep_intermediates']"),  # kept, silently
    ("stage=license step=5", "config.step: expected a string or null, got 5"),
    # a quoted 'false' is a non-empty string: these two stages ran (the others' own sections refused it)
    ("quality.enabled='false'", "quality.enabled: expected true or false, got 'false'"),
    ("english.enabled='no'", "english.enabled: expected true or false, got 'no'"),
]


@pytest.mark.parametrize("override, said", BAD, ids=[o for o, _ in BAD])
def test_a_wrong_type_or_unknown_top_level_key_is_refused(tmp_path, capsys, override, said):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.py").write_text("def f(x):\n    return x + 1\n")
    out = tmp_path / "out"
    assert main([f"input={tmp_path / 'in'}", f"output={out}", "workers=1", *override.split()]) == 2
    assert said in capsys.readouterr().err
    assert not out.exists()  # before any work


def test_the_shipped_config_and_its_null_nodes_pass():
    from data_pipeline.pipeline import options

    opts = options(compose_config(["input=/in", "output=/out"]))
    assert (opts.stage, opts.progress, opts.keep_intermediate, opts.tokenizer["train"]) == ("all", True, True, False)
    assert options(compose_config(["input=/in", "output=/out", "tokenizer=null"])).tokenizer is None
    assert options(compose_config(["input=[/a,/b]", "output=/out", "task=1", "n_tasks=2"])).input == ["/a", "/b"]
