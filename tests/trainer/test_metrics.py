"""metrics.jsonl fields, wandb offline run files without network, PNG plots, MFU arithmetic."""
import pytest

from helpers import metrics, train_inprocess
from refact_train.metrics import PEAK_FLOPS, detect_peak_flops, flops_per_token


def test_jsonl_wandb_offline_and_plots(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # no key, no network: "auto" must pick offline by itself
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc either
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = tmp_path / "run"
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={run}", "train.max_steps=3", "checkpoint.every=3",
                     "metrics.wandb=true", "metrics.wandb_mode=auto", "early_dropout.rate=0.1",
                     "early_dropout.until_step=2"])
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        for key in ("step", "loss", "lr", "dropout", "tokens_per_s", "grad_norm", "mfu", "rss_gb"):
            assert key in r
        assert r["tokens_per_s"] > 0
    assert (run / "config.yaml").is_file()
    offline = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert offline, list((run / "wandb").rglob("*"))

    from refact_train.plot import plot_run
    pngs = plot_run(run)
    assert sorted(p.name for p in pngs) == ["dashboard.png", "dropout.png", "loss.png", "lr.png", "tokens_per_s.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_mfu_arithmetic():
    # 1.6B at 4096 context: 6N + 12 * L * d * T FLOPs per token
    n, layers, d, t = 1_585_842_176, 32, 2048, 4096
    assert flops_per_token(n, layers, d, t) == pytest.approx(6 * n + 12 * layers * d * t)
    assert detect_peak_flops(123.0) == 123.0
    assert set(PEAK_FLOPS) >= {"A5000", "A100", "H100", "H200"}
