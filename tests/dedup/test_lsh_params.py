"""LSH band/row math: BigCode's 25 x 10 at (0.7, 256), and datasketch's choice elsewhere."""
import pytest
from datasketch.lsh import _optimal_param

from data_pipeline.dedup.minhash import collision_probability, optimal_bands_rows
from data_pipeline.dedup.near_dedup import NearDedupConfig


def test_bigcode_parameters():
    assert optimal_bands_rows(0.7, 256) == (25, 10)
    assert NearDedupConfig().band_rows == (25, 10)


@pytest.mark.parametrize("threshold,num_perm", [(0.5, 128), (0.85, 256), (0.8, 64)])
def test_matches_datasketch(threshold, num_perm):
    assert optimal_bands_rows(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_collision_probability():
    assert collision_probability(0.7, 25, 10) == pytest.approx(1 - (1 - 0.7**10) ** 25)
    assert collision_probability(0.9, 25, 10) > 0.9999
    assert collision_probability(0.3, 25, 10) < 0.002


def test_explicit_bands_and_bad_config():
    assert NearDedupConfig(bands=32, rows=8).band_rows == (32, 8)
    with pytest.raises(ValueError, match="bands and near_dedup.rows"):
        NearDedupConfig(bands=32)
    with pytest.raises(ValueError, match="30 x 10: .*product <= num_perm=256"):
        NearDedupConfig(bands=30, rows=10)
    with pytest.raises(ValueError, match="near_dedup: unknown key.*'treshold'"):
        NearDedupConfig.from_dict({"treshold": 0.8})
