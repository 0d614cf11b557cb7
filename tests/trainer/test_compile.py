"""`train.compile=true` on the CPU (inductor), tiny model: the same losses as eager over 10 steps, and a compiled run's
checkpoint (plain state-dict keys, no `_orig_mod.`) resumes in an eager run. About 50 s on 2 shared cores with a cold
inductor cache (compilation is 40 of them); the smallest model that still has every module."""
from helpers import losses, train_inprocess, weights

# fp32 on the CPU: inductor reorders and fuses the same arithmetic, so losses differ by rounding only (7e-8 relative
# measured over the 10 steps); Lion's sign update can turn a rounding difference into one lr-sized step on a near-zero
# momentum, hence a margin and not bit-equality.
REL_TOL = 1e-4
COMMON = ["train.max_steps=10", "checkpoint.every=10", "model.n_layer=1", "data.seq_len=32", "train.global_batch=4",
          "train.micro_batch=4"]


def test_compiled_training_matches_eager_and_its_checkpoint_resumes_eagerly(corpus_dir, tmp_path):
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={eager}", *COMMON])
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={compiled}", "train.compile=true", *COMMON])
    le, lc = losses(eager), losses(compiled)
    assert sorted(le) == sorted(lc) == list(range(1, 11))
    for step in le:
        assert abs(le[step] - lc[step]) <= REL_TOL * le[step], (step, le[step], lc[step])
    assert lc[10] < lc[1]
    sd = weights(compiled, 10)
    assert sd.keys() == weights(eager, 10).keys()
    assert not any("_orig_mod" in k for k in sd)
    # an eager run resumes from the compiled run's checkpoint (model and optimizer state, strict keys)
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={compiled}", *COMMON, "train.max_steps=12",
                     "checkpoint.every=12"])
    resumed = losses(compiled)
    assert set(resumed) >= {11, 12}
