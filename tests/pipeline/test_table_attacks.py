"""Record inputs as users and their tools write them (JSONL, CSV, Parquet, saved datasets), against the ingest stage:
a byte-order mark, a text column under another name, a format forced onto the wrong kind of path, a JSON array
handed over as JSONL, the same input twice. Each either reads as the user meant or stops the run before any work
with one line naming the input and the fix.
"""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_pipeline.sources import ingest

from test_ingest_attacks import KEPT, outcomes

BOM = b"\xef\xbb\xbf"


def test_a_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
    """Windows tools (PowerShell's Out-File, Excel's "CSV UTF-8") start a file with a BOM: the first JSONL line was
    corrupt:jsonl, and a CSV's first column was named "\\ufefftext" so that no row of the file had a text."""
    records = tmp_path / "records.jsonl"
    line = json.dumps({"text": "a = 1\n", "path": "a.py"}).encode()
    records.write_bytes(BOM + line + b"\r\n" + BOM + json.dumps({"text": "b = 2\n", "path": "b.py"}).encode() + b"\n")
    assert outcomes(records, "jsonl") == {"a.py": KEPT, "b.py": KEPT}  # the second: two files joined with `cat`
    folder = tmp_path / "tables"
    folder.mkdir()
    (folder / "excel.csv").write_bytes(BOM + b"text,path\r\nc = 3,c.py\r\n")
    assert outcomes(folder, "hf_files") == {"c.py": KEPT}


@pytest.mark.parametrize("fmt,kind,says", [
    ("jsonl", "dir", "is a directory, but ingest.format=jsonl reads one file"),
    ("parquet", "dir", "is a directory, but ingest.format=parquet reads one file"),
    ("files", "file", "is a file, but ingest.format=files reads a directory"),
    ("hf_files", "file", "is a file, but ingest.format=hf_files reads a directory"),
    ("hf_disk", "file", "is a file, but ingest.format=hf_disk reads a directory"),
    ("hf_disk", "dir", "is no dataset saved with save_to_disk"),
])
def test_a_format_forced_onto_the_wrong_kind_of_path_stops_the_run(tmp_path, fmt, kind, says):
    """Each was one dropped entry (`unreadable`, `unreadable_dir`) and a run that finished with no document."""
    path = tmp_path / "data.jsonl"
    if kind == "dir":
        path.mkdir()
        (path / "a.py").write_text("x = 1\n")
    else:
        path.write_text('{"text": "x = 1"}\n')
    with pytest.raises(ingest.InputError, match=says) as err:
        ingest.validate_inputs({"input": str(path), "ingest": {"format": fmt}})
    assert str(path) in str(err.value)
