"""`refact-train plot` on run directories that are empty, half-written, cut by a kill or not a run's at all."""
import json

import pytest

from refact_train.metrics import JsonlSink
from refact_train.plot import main as plot_main, read_run_metrics

RECORD = {"step": 1, "loss": 6.5, "lr": 1e-3, "dropout": 0.0, "tokens_per_s": 100.0, "grad_norm": 1.0}


def plot(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        plot_main([str(a) for a in args])
    return exit_.value.code, capsys.readouterr().err


def write(run, text: bytes):
    run.mkdir(exist_ok=True)
    (run / "metrics.jsonl").write_bytes(text)


@pytest.mark.parametrize("text, said", [
    (b"", "holds no metrics record yet"),  # five empty PNGs and exit 0 before
    (json.dumps(RECORD).encode()[:30], "holds no metrics record yet"),  # the first record still being written
    (b'{"step": 1e400}\n', "not a metrics record (no integer step"),  # OverflowError traceback before
    (b'{"step": true, "loss": 1}\n', "not a metrics record (no integer step"),  # read as step 1 before
    (b'{"a": 1}\n', "metrics.jsonl:1: not a metrics record"),
    (b'\xff\xfe{"step": 1}\n', "not UTF-8 text"),  # said without the file before
])
def test_a_run_dir_without_metrics_records_is_one_line(tmp_path, capsys, text, said):
    write(tmp_path / "run", text)
    code, err = plot(capsys, tmp_path / "run")
    assert code == 2 and said in err and "Traceback" not in err, err
    assert not (tmp_path / "run" / "plots").exists()


def test_a_line_cut_by_a_kill_is_skipped_and_the_next_run_starts_a_new_line(tmp_path, capsys):
    """A kill mid-record left half a line; the resumed run glued its first record onto it, and plot refused the
    whole file at that line (a run being written to showed the same for its last line)."""
    run = tmp_path / "run"
    write(run, (json.dumps(RECORD) + "\n" + json.dumps({**RECORD, "step": 2})[:25]).encode())
    sink = JsonlSink(run / "metrics.jsonl")  # the resumed run
    sink.log({**RECORD, "step": 2, "loss": 6.4})
    sink.close()
    m = read_run_metrics(run)
    assert [(r["step"], r["loss"]) for r in m.steps] == [(1, 6.5), (2, 6.4)] and m.cut_lines == [2]
    plot_main([str(run)])
    captured = capsys.readouterr()
    assert "skipped line(s) [2]" in captured.err and (run / "plots" / "dashboard.png").is_file()


def test_an_out_dir_that_cannot_be_made_is_one_line(tmp_path, capsys):
    write(tmp_path / "run", (json.dumps(RECORD) + "\n").encode())
    (tmp_path / "file").write_text("x")
    code, err = plot(capsys, tmp_path / "run", tmp_path / "file")  # FileExistsError traceback before
    assert code == 2 and "cannot write the plots to" in err and "give a writable OUT_DIR" in err, err
    code, err = plot(capsys, tmp_path / "file")  # RUN_DIR a file
    assert code == 2 and "metrics.jsonl not found" in err, err
