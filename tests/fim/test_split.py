"""String-level FIM splits: exact round trip, determinism, the split-point distributions, FIMv2 splitter kinds."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from data_pipeline.fim import MODES, FimConfig, FimSplit, fim_rng, split_text
from data_pipeline.fim import _content_len, _indent, _is_blank

PRETRAIN = FimConfig(mode="pretrain")
FINETUNE = FimConfig(mode="finetune", empty_middle_rate=0.1)


@pytest.mark.parametrize("cfg", [PRETRAIN, FINETUNE], ids=["pretrain", "finetune"])
def test_round_trip_over_many_seeds(corpus, cfg):
    for seed in range(3):
        for i, text in enumerate(corpus):
            for cut_end in (False, True):
                for k in range(10):
                    split = split_text(text, fim_rng(seed, 1000 * i + k), cfg, cut_end=cut_end)
                    assert split.prefix + split.middle + split.suffix == text


@pytest.mark.parametrize("cfg", [PRETRAIN, FINETUNE], ids=["pretrain", "finetune"])
def test_deterministic_per_seed_and_index(corpus, cfg):
    text = corpus[0]
    a = [split_text(text, fim_rng(7, i), cfg) for i in range(50)]
    b = [split_text(text, fim_rng(7, i), cfg) for i in range(50)]
    c = [split_text(text, fim_rng(8, i), cfg) for i in range(50)]
    assert a == b
    assert a != c
    assert len(set(a)) > 40  # different indices give different splits


def test_pretrain_split_points_are_two_uniform_character_positions():
    text = "x" * 99  # 100 possible boundaries 0..99
    lows, highs = [], []
    for i in range(4000):
        s = split_text(text, fim_rng(0, i), PRETRAIN)
        lows.append(len(s.prefix))
        highs.append(len(s.prefix) + len(s.middle))
    lows, highs = np.array(lows), np.array(highs)
    # min and max of two uniforms on [0, 99]: means 33 and 66
    assert abs(lows.mean() - 33.0) < 1.5 and abs(highs.mean() - 66.0) < 1.5
    assert lows.min() == 0 and highs.max() == 99  # boundaries include both ends (Megatron's randint high=len+1)
    assert (lows == highs).any()  # empty middles happen


def test_pretrain_handles_empty_text():
    assert split_text("", fim_rng(0, 0), PRETRAIN) == FimSplit("", "", "", "chars")


def _row_of(text: str, pos: int) -> int:
    return text[:pos].count("\n")


def test_finetune_splitter_rates_within_tolerance(corpus):
    n = 3000
    kinds = Counter(split_text(corpus[8], fim_rng(1, i), FINETUNE).kind for i in range(n))
    assert abs(kinds["empty_middle"] / n - 0.1) < 0.02
    rest = n - kinds["empty_middle"]
    for kind, p in zip(("inside_row", "to_end_of_row", "multi_row"), FINETUNE.splitter_probs):
        assert abs(kinds[kind] / rest - p) < 0.03, (kind, kinds)


def test_finetune_middles_follow_their_splitter(corpus):
    for i, text in enumerate(corpus[:8]):
        lines = text.splitlines(keepends=True)
        for k in range(200):
            s = split_text(text, fim_rng(2, 1000 * i + k), FINETUNE)
            if s.kind == "empty_middle":
                assert s.middle == ""
            elif s.kind == "inside_row":
                assert "\n" not in s.middle
            elif s.kind == "to_end_of_row":
                assert "\n" not in s.middle
                assert s.suffix == "" or s.suffix[0] in "\r\n"  # the middle stops at the line break
            else:
                assert s.kind == "multi_row"
                assert s.suffix == "" or s.prefix.endswith("\n") or s.middle.endswith("\n")
                start_row = _row_of(text, len(s.prefix))
                end_row = _row_of(text, len(s.prefix) + len(s.middle))  # first row of the suffix
                assert 1 <= end_row - start_row <= FINETUNE.max_middle_rows or s.suffix == ""
                if s.suffix:
                    inside = lines[start_row + 1:end_row]
                    stop = lines[end_row]
                    base = _indent(lines[start_row])
                    # the middle never runs past a blank or less-indented row...
                    assert not any(_is_blank(r) or _indent(r) < base for r in inside)
                    # ...and stops at the first one within reach; only without one is the length random
                    if not (_is_blank(stop) or _indent(stop) < base):
                        reach = lines[start_row + 1:start_row + 1 + FINETUNE.max_middle_rows]
                        assert not any(_is_blank(r) or _indent(r) < base for r in reach)


def test_multi_row_stops_at_blank_line_or_smaller_indent():
    text = "def f(x):\n    a = 1\n    b = 2\n    return a + b\n\ndef g():\n    pass\n"
    cfg = FimConfig(mode="finetune", splitter_probs=(0, 0, 1))
    ends = Counter()
    for i in range(300):
        s = split_text(text, fim_rng(3, i), cfg)
        ends[s.suffix.split("\n", 1)[0]] += 1
        start_row = _row_of(text, len(s.prefix))
        if start_row in (1, 2, 3):  # inside the body of f: the middle ends before the blank line
            assert s.suffix.startswith("\ndef g")
        if start_row == 0:  # `def f` at indent 0: only the blank line ends it
            assert s.suffix.startswith("\ndef g")
        if start_row == 5:  # `def g():` -> the body row, then end of file
            assert s.suffix in ("",) or s.suffix.startswith("    pass")
    assert ends[""] > 0


def test_rows_are_picked_in_proportion_to_their_length():
    long_row = "y" * 300 + "\n"
    text = "a\n" * 100 + long_row  # the long row holds 301 of 501 characters
    cfg = FimConfig(mode="finetune", splitter_probs=(1, 0, 0))
    hits = sum(_row_of(text, len(split_text(text, fim_rng(4, i), cfg).prefix)) == 100 for i in range(3000))
    assert abs(hits / 3000 - 301 / 501) < 0.03


def test_cut_end_never_ends_a_middle_in_the_partial_last_row():
    text = "row one\nrow two\nrow three is partial and lo"
    cfg = FimConfig(mode="finetune", empty_middle_rate=0.2)
    for i in range(500):
        s = split_text(text, fim_rng(5, i), cfg, cut_end=True)
        assert s.suffix.endswith("row three is partial and lo")
        assert "row three" in s.suffix


def test_content_len_excludes_every_kind_of_line_break():
    assert [_content_len(x) for x in ("ab\r\n", "ab\n", "ab\r", "ab", "ab\u2028", "")] == [2, 2, 2, 2, 2, 0]


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="mode"):
        FimConfig(mode="middle")
    with pytest.raises(ValueError, match="spm_variant"):
        FimConfig(spm_variant="psm")
    with pytest.raises(ValueError, match="rate"):
        FimConfig(rate=1.5)
    with pytest.raises(ValueError, match="splitter_probs"):
        FimConfig(splitter_probs=(1, 1))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['fim_rate'\]"):
        FimConfig.from_dict({"fim_rate": 0.5})
    assert FimConfig.from_dict({"mode": "finetune", "splitter_probs": [0.1, 0.2, 0.7]}).splitter_probs == (0.1, 0.2, 0.7)


@pytest.mark.parametrize("probs", [(float("nan"), 1, 1), (float("nan"),) * 3, (float("inf"), 1, 1), ("a", 1, 1),
                                   (True, 1, 1)])
def test_splitter_weights_that_are_no_finite_numbers_are_refused(probs):
    # NaN or inf picked multi_row for every middle; all NaN raised StopIteration in the data loader; "a" was
    # float()'s ValueError naming no key
    with pytest.raises(ValueError, match="splitter_probs"):
        FimConfig(mode="finetune", splitter_probs=probs)


def test_max_middle_rows_past_what_numpy_draws_is_refused():
    with pytest.raises(ValueError, match="max_middle_rows"):  # "high is out of bounds for int64" mid-training
        FimConfig(mode="finetune", max_middle_rows=10**30)


@pytest.mark.parametrize("mode", MODES)
def test_tiny_texts_and_texts_without_a_line_break_round_trip(mode):
    cfg = FimConfig(mode=mode, empty_middle_rate=0.2)
    for text in ["", "a", "ab", "abc", "\n", "\r\n", "\n\n", "\u2028x", "\x00\x00", "one line without a break"]:
        for i in range(200):
            for cut_end in (False, True):
                split = split_text(text, fim_rng(0, i), cfg, cut_end=cut_end)
                assert split.text == text, (text, i, split)
