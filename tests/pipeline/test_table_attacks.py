"""Record inputs as users and their tools write them (JSONL, CSV, Parquet, saved datasets), against the ingest stage:
a byte-order mark, a text column under another name, a format forced onto the wrong kind of path, a JSON array
handed over as JSONL, the same input twice. Each either reads as the user meant or stops the run before any work
with one line naming the input and the fix.
"""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_pipeline.sources import ingest

from test_ingest_attacks import KEPT, PEAK_KIB, outcomes

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


@pytest.mark.parametrize("column,values,says", [
    ("body", ["x = 1\n"], "it has no column named text / content / code (its columns: id, body)"),
    ("text", [1], "its column text is int64, not text"),
    ("text", [["x = 1\n"]], "its column text is list<"),  # <item: ...> or, read from Parquet, <element: ...>
    ("text", [{"code": "x = 1\n"}], "its column text is struct<code: string>, not text"),
])
def test_a_table_whose_text_column_cannot_be_found_stops_the_run(tmp_path, column, values, says):
    """Every row was `missing_text`, in a run that ended with `0 kept` and nothing else said; the error names the
    columns and the fix, and the fix works (for a Parquet file and a dataset saved with save_to_disk)."""
    import datasets

    table = pa.table({"id": [str(i) for i in range(len(values))], column: values})
    pq.write_table(table, str(tmp_path / "rows.parquet"))
    datasets.Dataset(table).save_to_disk(str(tmp_path / "saved"))
    for path in (tmp_path / "rows.parquet", tmp_path / "saved"):
        with pytest.raises(ingest.InputError, match="name the column that holds it with") as err:
            ingest.validate_inputs({"input": str(path)})
        assert f"input {path}: no row can have a text: {says}" in str(err.value)
    if column == "body":  # the fix the message gives
        section = {"fields": {"text": ["body"]}}
        [(path, fmt, _)] = ingest.validate_inputs({"input": str(tmp_path / "rows.parquet"), "ingest": section})
        assert outcomes(path, fmt, section) == {"rows.parquet:0": KEPT}


def test_text_columns_of_every_string_type_are_read(tmp_path):
    """binary, large_string, dictionary-encoded; a null column passes the check (its rows are `missing_text`), and
    a `text` that is a number gives way to a `content` that is code."""
    columns = {"binary": pa.array([b"b = 1\n", b"\xff\xfe"], pa.binary()),
               "large": pa.array(["l = 1\n", "l = 2\n"], pa.large_string()),
               "dict": pa.array(["d = 1\n", "d = 1\n"]).dictionary_encode(),
               "nulls": pa.nulls(2)}
    got = {}
    for name, column in columns.items():
        pq.write_table(pa.table({"text": column}), str(tmp_path / f"{name}.parquet"))
        [(path, fmt, _)] = ingest.validate_inputs({"input": str(tmp_path / f"{name}.parquet")})
        got.update(outcomes(path, fmt))
    pq.write_table(pa.table({"text": [7], "content": ["c = 1\n"]}), str(tmp_path / "both.parquet"))
    got.update(outcomes(tmp_path / "both.parquet", "parquet"))
    assert got == {"binary.parquet:0": KEPT, "binary.parquet:1": "encoding:not_utf8", "large.parquet:0": KEPT,
                   "large.parquet:1": KEPT, "dict.parquet:0": KEPT, "dict.parquet:1": KEPT,
                   "nulls.parquet:0": "missing_text", "nulls.parquet:1": "missing_text", "both.parquet:0": KEPT}


@pytest.mark.parametrize("layout,says", [("array", "a JSON array"), ("pretty", "a JSON array"),
                                         ("object", "pretty-printed JSON")])
def test_a_json_array_or_pretty_printed_json_given_as_jsonl_stops_the_run(tmp_path, layout, says):
    """alpaca_data.json and its kind: every line was `corrupt:jsonl` (or the one-line array one `corrupt_record`),
    in a run that ended with no document."""
    rows = [{"text": "def f():\n    return 1\n"}, {"text": "def g():\n    return 2\n"}]
    data = {"array": json.dumps(rows), "pretty": json.dumps(rows, indent=2),
            "object": json.dumps(rows[0], indent=2)}[layout]
    path = tmp_path / "data.json"
    path.write_bytes(BOM + b"\n" + data.encode() + b"\n")
    with pytest.raises(ingest.InputError, match=f"is {says}, not JSONL .* convert it: jq -c") as err:
        ingest.validate_inputs({"input": str(path)})
    assert str(path) in str(err.value) and "data.json > data.jsonl" in str(err.value)
    named_jsonl = path.rename(tmp_path / "data.jsonl")
    with pytest.raises(ingest.InputError, match="data.jsonl > data-lines.jsonl"):  # not `> data.jsonl`: it empties it
        ingest.validate_inputs({"input": str(named_jsonl)})
    named_jsonl.rename(path)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")  # JSONL, and lines that only look like JSON
    assert ingest.validate_inputs({"input": str(path)})[0][1] == "jsonl"
    for first in ("[1, 2", "[[", '{"text": "a"}'):
        path.write_text(first + "\n" + json.dumps(rows[0]) + "\n")  # a cut array is a corrupt line, not a run error
        assert ingest.validate_inputs({"input": str(path)})[0][1] == "jsonl"


def test_an_input_given_twice_or_inside_another_stops_the_run(tmp_path):
    """input=[a,a] read every record twice (sources `a` and `a-1`), and so did a folder beside one of its files:
    dedup hid it, or, with dedup off, it doubled that data's weight."""
    records = tmp_path / "repo" / "records.jsonl"
    records.parent.mkdir()
    records.write_text('{"text": "x = 1"}\n')
    with pytest.raises(ingest.InputError, match=f"input {records} is given twice; pass it once"):
        ingest.validate_inputs({"input": [str(records), str(tmp_path / "repo" / "." / "records.jsonl")]})
    for pair in ([records.parent, records], [records, records.parent]):
        with pytest.raises(ingest.InputError, match=f"input {records} lies inside input {records.parent}: "):
            ingest.validate_inputs({"input": [str(p) for p in pair]})
    (tmp_path / "repo2").mkdir()  # a sibling whose name starts the same is not inside
    assert len(ingest.validate_inputs({"input": [str(records.parent), str(tmp_path / "repo2")]})) == 2


def test_compressed_jsonl_and_csv_are_read_and_a_cut_archive_is_one_entry(tmp_path):
    """train.jsonl.gz (and .bz2, .xz) was `cannot tell its format`, or with ingest.format=jsonl every line of
    compressed bytes `corrupt:jsonl`; in a folder of data files each was `unknown_type`."""
    import bz2
    import gzip
    import lzma

    lines = "".join(json.dumps({"text": f"x = {i}\n", "path": f"m{i}.py"}) + "\n" for i in range(3)).encode()
    folder = tmp_path / "data"
    folder.mkdir()
    for ext, compress in ((".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)):
        path = tmp_path / f"train{ext[1:]}.jsonl{ext}"
        path.write_bytes(compress(lines))
        [(path, fmt, source)] = ingest.validate_inputs({"input": str(path)})
        assert (fmt, source) == ("jsonl", f"train{ext[1:]}") and outcomes(path, fmt) == {f"m{i}.py": KEPT for i in
                                                                                       range(3)}
        (folder / f"cut.jsonl{ext}").write_bytes(compress(lines)[:-12])
    (folder / "rows.csv.gz").write_bytes(gzip.compress(b"text,path\nc = 1,c.py\n"))
    pq.write_table(pa.table({"text": ["p = 1"]}), str(folder / "rows.parquet"))
    (folder / "rows.parquet.gz").write_bytes(gzip.compress((folder / "rows.parquet").read_bytes()))
    assert outcomes(folder, "hf_files") == {
        "cut.jsonl.gz": "corrupt:jsonl", "cut.jsonl.bz2": "corrupt:jsonl", "cut.jsonl.xz": "corrupt:jsonl",
        "c.py": KEPT, "rows.parquet:0": KEPT, "rows.parquet.gz": "unknown_type"}
    array = tmp_path / "array.json.gz"  # the JSON-array check reads through the compression too
    array.write_bytes(gzip.compress(b'[{"text": "x"}]\n'))
    with pytest.raises(ingest.InputError, match="is a JSON array, not JSONL"):
        ingest.validate_inputs({"input": str(array)})


def test_a_compression_bomb_costs_one_line_of_memory(tmp_path):
    """A 0.3 MB gzip expanding to 256 MiB without a newline: one `too_large` entry, the records around it read, and
    memory stays about that of one 64 MiB line (212 MiB peak with the imports; read whole: 680 MiB)."""
    import gzip
    import subprocess
    import sys

    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as g:
        g.write(json.dumps({"text": "a = 1\n", "path": "a.py"}).encode() + b"\n")
        for _ in range(16):
            g.write(bytes(16 << 20))
        g.write(b"\n" + json.dumps({"text": "b = 2\n", "path": "b.py"}).encode() + b"\n")
    assert bomb.stat().st_size < 1 << 20
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from test_ingest_attacks import outcomes; "
            "print(sorted(outcomes(__import__('pathlib').Path(sys.argv[1]), 'jsonl').items()), "
            f"{PEAK_KIB})")
    proc = subprocess.run([sys.executable, "-c", code, str(bomb), str(Path(__file__).parent)], capture_output=True,
                          text=True, timeout=300, check=True)
    got, peak_kib = proc.stdout.rsplit(" ", 1)
    assert got == str(sorted({"a.py": KEPT, "bomb.jsonl.gz:2": "too_large", "b.py": KEPT}.items()))
    assert int(peak_kib) < 320 << 10, f"peak {peak_kib} KiB"  # seen: 212 MiB; read whole: 680 MiB


def test_a_split_the_dataset_does_not_have_is_named(tmp_path):
    """ingest.hf_split=validation on a DatasetDict of train and test said only "set ingest.hf_split"."""
    import datasets

    rows = [{"text": "x = 1\n"}]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows)}
                         ).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ingest.InputError, match=r"ingest.hf_split='validation' is none of its splits \['train', "):
        ingest.validate_inputs({"input": str(tmp_path / "dd"), "ingest": {"hf_split": "validation"}})
    with pytest.raises(ingest.InputError, match="a DatasetDict with splits"):
        ingest.validate_inputs({"input": str(tmp_path / "dd")})
    assert ingest.validate_inputs({"input": str(tmp_path / "dd"), "ingest": {"hf_split": "test"}})[0][1] == "hf_disk"


def _varint(n: int, length: int | None = None) -> bytes:
    """Thrift's unsigned varint of `n`, padded with zero groups to `length` bytes (readers accept the padding)."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
        if not n:
            break
    while length and len(out) < length:
        out.append(0x80)
    out[-1] &= 0x7F
    return bytes(out)


def state_a_size(data: bytes, true: int, said: int, start: int = 0) -> bytes:
    """The bytes of a Parquet file whose thrift sizes `true` (from byte `start`) say `said` instead."""
    old = _varint(true * 2)  # i32/i64 fields are zigzag varints
    assert data.find(old, start) >= 0
    return data[:start] + data[start:].replace(old, _varint(said * 2, len(old)))


def test_a_parquet_decompression_bomb_is_one_too_large_entry_whatever_its_footer_says(tmp_path, monkeypatch):
    """A 41 KB Parquet held 300 MB of text in one page (the file decides the page size) and peaked at 1.9 GB, kept
    as one document, and so did a copy whose footer says the column holds 1 KB. The page headers (which pyarrow
    trusts to allocate) decide: a page over MAX_PAGE_BYTES is one `too_large` entry for its row group, never decoded;
    a header that understates its page is `corrupt:parquet`; a big page in a column no field uses is not read."""
    from data_pipeline.sources import tables

    monkeypatch.setattr(tables, "MAX_PAGE_BYTES", 1 << 20)  # the same, at 1/256 of the size
    big = "a" * (2 << 20)
    pq.write_table(pa.table({"text": ["x = 1\n", big, "y = 2\n"], "id": ["0", "1", "2"]}), str(tmp_path / "b.parquet"),
                   compression="zstd", row_group_size=1, data_page_size=1 << 30)
    pq.write_table(pa.table({"text": ["z = 3\n"], "blob": [big]}), str(tmp_path / "unused.parquet"),
                   compression="zstd", data_page_size=1 << 30)
    data = (tmp_path / "b.parquet").read_bytes()
    assert len(data) < 8 << 10
    column = pq.ParquetFile(str(tmp_path / "b.parquet")).metadata.row_group(1).column(0)
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    (tmp_path / "footer_lies.parquet").write_bytes(state_a_size(data, column.total_uncompressed_size, 1000, footer))
    lying = pq.ParquetFile(str(tmp_path / "footer_lies.parquet")).metadata.row_group(1).column(0)
    assert lying.total_uncompressed_size == 1000
    page_header = column.dictionary_page_offset or column.data_page_offset
    (tmp_path / "header_lies.parquet").write_bytes(state_a_size(data, len(big) + 4, 1000, page_header))
    got = outcomes(tmp_path, "hf_files")
    assert got == {"b.parquet:0": KEPT, "b.parquet:rows 1-1": "too_large", "b.parquet:2": KEPT,
                   "footer_lies.parquet:0": KEPT, "footer_lies.parquet:rows 1-1": "too_large",
                   "footer_lies.parquet:2": KEPT, "header_lies.parquet:0": KEPT,
                   "header_lies.parquet:rows 1-1": "corrupt:parquet", "header_lies.parquet:2": KEPT,
                   "unused.parquet:0": KEPT}


def test_a_dictionary_entry_repeated_in_every_row_is_read_in_small_batches(tmp_path):
    """One 8 MiB dictionary entry in 100 rows: a 5 KB file, and batches of 1024 rows made it 800 MB of Arrow and as
    much of Python strings at once (1.7 GB peak). Batches now hold about BATCH_BYTES by the page headers' count."""
    import subprocess
    import sys

    path = tmp_path / "repeated.parquet"
    repeated = pa.DictionaryArray.from_arrays(pa.array([0] * 100, pa.int32()), pa.array(["r" * (8 << 20)]))
    pq.write_table(pa.table({"text": repeated}), str(path), compression="zstd", store_schema=False)  # read as strings
    assert path.stat().st_size < 64 << 10
    code = ("import collections, sys; sys.path.insert(0, sys.argv[2]); "
            "from test_ingest_attacks import outcomes; "
            "print(collections.Counter(outcomes(__import__('pathlib').Path(sys.argv[1]), 'parquet').values()), "
            f"{PEAK_KIB})")
    proc = subprocess.run([sys.executable, "-c", code, str(path), str(Path(__file__).parent)], capture_output=True,
                          text=True, timeout=300, check=True)
    got, peak_kib = proc.stdout.rsplit(" ", 1)
    assert got == "Counter({'kept': 100})"
    assert int(peak_kib) < 600 << 10, f"peak {peak_kib} KiB"  # imports ~100 MiB, a batch 2x64 MiB; seen: 366 MiB


def test_a_shard_listed_twice_in_state_json_is_read_once(tmp_path):
    """A state.json edited by hand (or a merge gone wrong) listing one Arrow shard twice read every row twice."""
    import datasets

    datasets.Dataset.from_list([{"text": f"x = {i}\n"} for i in range(3)]).save_to_disk(str(tmp_path / "saved"))
    state_path = tmp_path / "saved" / "state.json"
    state = json.loads(state_path.read_text())
    state["_data_files"] = state["_data_files"] * 2
    state_path.write_text(json.dumps(state))
    assert outcomes(tmp_path / "saved", "hf_disk") == {f"saved:{i}": KEPT for i in range(3)}


def test_a_split_given_where_no_input_has_splits_stops_the_run(tmp_path):
    """ingest.hf_split=train on a single saved Dataset, or on a folder holding train and test files, was ignored:
    the whole input was read, test rows included. Beside a DatasetDict that needs it, it stays allowed."""
    import datasets

    rows = [{"text": "x = 1\n"}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    (tmp_path / "files").mkdir()
    for split in ("train", "test"):
        (tmp_path / "files" / f"{split}.jsonl").write_text(json.dumps(rows[0]) + "\n")
    for path, kind in ((tmp_path / "single", "a single saved Dataset"), (tmp_path / "files", "a folder of data files")):
        with pytest.raises(ingest.InputError, match=f"ingest.hf_split='train' chooses a split of a DatasetDict .* no "
                                                    f"input is one \\({path} is {kind}\\); remove ingest.hf_split"):
            ingest.validate_inputs({"input": str(path), "ingest": {"hf_split": "train", "format": "auto" if
                                    kind.endswith("Dataset") else "hf_files"}})
    both = ingest.validate_inputs({"input": [str(tmp_path / "dd"), str(tmp_path / "single")],
                                   "ingest": {"hf_split": "train"}})
    assert [fmt for _, fmt, _ in both] == ["hf_disk", "hf_disk"]


def test_a_folder_of_data_files_is_read_as_records_and_a_repository_with_test_tables_as_files(tmp_path):
    """A downloaded dataset (Parquet shards, JSONL, a README, .gitattributes, dataset_infos.json) given without
    ingest.format=hf_files: every Parquet file was one `binary` entry and every JSONL file `unknown_type`, in a run
    with no document. A folder holding code beside its test tables, or only `.json` files, is still read as files."""
    data = tmp_path / "download"
    (data / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["p = 1\n"], "path": ["p.py"]}), str(data / "data" / "train-00000.parquet"))
    (data / "data" / "extra.jsonl").write_text(json.dumps({"text": "j = 1\n", "path": "j.py"}) + "\n")
    (data / "README.md").write_text("---\nlicense: mit\n---\n# A dataset\n")
    (data / ".gitattributes").write_text("*.parquet filter=lfs\n")
    [(path, fmt, _)] = ingest.validate_inputs({"input": str(data), "output": str(data / "out")})
    assert fmt == "hf_files"
    assert outcomes(path, fmt) == {"p.py": KEPT, "j.py": KEPT, "README.md": "unknown_type",
                                   ".gitattributes": "unknown_type"}
    repo = tmp_path / "repo"
    (repo / "tests" / "data").mkdir(parents=True)
    (data / "data" / "train-00000.parquet").rename(repo / "tests" / "data" / "fixture.parquet")
    (repo / "tests" / "test_io.py").write_text("def test_read():\n    assert True\n")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "settings.json").write_text('{"a": 1}\n')
    for folder in (repo, tmp_path / "configs"):
        assert ingest.validate_inputs({"input": str(folder)})[0][1] == "files"
    assert outcomes(repo, "files") == {"tests/test_io.py": KEPT, "tests/data/fixture.parquet": "binary"}
