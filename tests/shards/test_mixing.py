"""Mixture math: weights from shares, deterministic repeat/subsample, config errors."""
from __future__ import annotations

import numpy as np
import pytest

from data_pipeline.mixing import HoldoutConfig, MixtureConfig, compute_weights, uniform_hash


def test_explicit_weights_and_default():
    cfg = MixtureConfig(by="source", weights={"wiki": 2.0, "books": 0.25}, default_weight=1.0)
    weights, missing = compute_weights({"wiki": 100, "books": 400, "stack": 50}, cfg)
    assert weights == {"wiki": 2.0, "books": 0.25, "stack": 1.0} and missing == []


def test_shares_give_the_target_split_and_keep_the_total():
    cfg = MixtureConfig(shares={"text": 0.5, "code": 0.5})
    before = {"text": 1_000, "code": 9_000}
    weights, _ = compute_weights(before, cfg)
    after = {g: weights[g] * t for g, t in before.items()}
    assert after["text"] == pytest.approx(5_000) and after["code"] == pytest.approx(5_000)
    assert weights["text"] == pytest.approx(5.0) and weights["code"] == pytest.approx(5 / 9)


def test_shares_renormalise_over_present_groups_with_a_warning():
    cfg = MixtureConfig(shares={"text": 0.5, "code": 0.5})
    with pytest.warns(UserWarning, match="no tokens of \\['text'\\]"):
        weights, missing = compute_weights({"code": 700}, cfg)
    assert weights == {"code": pytest.approx(1.0)} and missing == ["text"]


def test_shares_must_name_every_group():
    with pytest.raises(ValueError, match=r"also has \['wiki'\]"):
        compute_weights({"code": 5, "wiki": 5}, MixtureConfig(by="source", shares={"code": 1.0}))


def test_the_copy_hash_is_uniform_deterministic_and_seeded():
    """build_shards gives a document floor(w) copies plus one when this hash is below frac(w)."""
    ids = [f"doc-{i}" for i in range(20_000)]
    u = np.array([uniform_hash(1, i, "mixture") for i in ids])
    assert ((0 <= u) & (u < 1)).all() and abs(u.mean() - 0.5) < 0.01
    for weight in (0.25, 2.3):
        copies = np.floor(weight) + (u < weight - np.floor(weight))
        assert abs(copies.mean() - weight) < 0.015
    assert (u == np.array([uniform_hash(1, i, "mixture") for i in ids])).all()
    assert (u != np.array([uniform_hash(2, i, "mixture") for i in ids])).any()  # the seed changes the draw


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="either `weights` or `shares`"):
        MixtureConfig(weights={"code": 1}, shares={"code": 1})
    with pytest.raises(ValueError, match="mixture.by"):
        MixtureConfig(by="lang")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['weight'\]"):
        MixtureConfig.from_dict({"weight": {"code": 1}})
    with pytest.raises(ValueError, match="holdout.fraction"):
        HoldoutConfig(fraction=2)
    with pytest.raises(ValueError, match=">= 0"):
        MixtureConfig(weights={"code": -1})


def test_weights_naming_a_group_the_data_lacks_are_warned_and_recorded():
    """A misspelt group (`kode: 0` meant to drop the code) was ignored silently: the code kept weight 1."""
    with pytest.warns(UserWarning, match=r"names \['kode'\], which the data lacks"):
        weights, missing = compute_weights({"code": 700, "text": 300}, MixtureConfig(weights={"kode": 0.0}))
    assert weights == {"code": 1.0, "text": 1.0} and missing == ["kode"]


def test_weights_that_leave_no_train_document_are_refused():
    """All groups at weight 0 wrote an empty train split; refact-train failed on it later."""
    with pytest.raises(ValueError, match=r"weight 0 to every group of the data \['code', 'text'\]"):
        compute_weights({"code": 700, "text": 300}, MixtureConfig(weights={"code": 0, "text": 0}))
    with pytest.raises(ValueError, match="weight 0 to every group"):
        compute_weights({"code": 700}, MixtureConfig(default_weight=0))
    assert compute_weights({"code": 0}, MixtureConfig(default_weight=0))[0] == {"code": 0}  # no train tokens at all


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_default_weight_that_is_not_a_finite_number_is_refused(value):
    # "repeats may not contain negative values" from numpy, deep in build_shards, before
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        MixtureConfig(default_weight=value)
