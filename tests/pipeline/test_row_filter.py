"""Rows kept as Arrow (`ShardOutput.keep_table`, `filter_rows`, used by the dedup filters) make the same shard, byte
for byte, and the same stats as the same documents kept one by one through Python objects."""
import pyarrow.parquet as pq

from data_pipeline.records import Document, read_documents, write_documents
from data_pipeline.stage import ShardOutput, StageContext, filter_rows


def _docs(n):
    return [Document(id=f"s/{i:05d}", text="ünïcode " * (i % 7) + f"line {i}\n", kind="code" if i % 3 else "text",
                     lang="python" if i % 3 else None, source="s", path=f"{i}.py", license="MIT" if i % 2 else None,
                     meta={"bytes": i, "z": [1, "é"]}) for i in range(n)]


def test_filter_rows_equals_keep_and_drop_one_by_one(tmp_path):
    source = tmp_path / "in.parquet"
    docs = _docs(2600)  # over two read batches of 1024 and several 512-row groups
    write_documents(source, docs)
    drop_every = {i for i in range(2600) if i % 5 == 0 or 1000 <= i < 1100}

    slow = StageContext("slow", 1, tmp_path / "a", (source,))
    with ShardOutput(slow, "00000") as out:
        for i, doc in enumerate(read_documents(source)):
            if i in drop_every:
                out.drop(doc, f"gone:{i % 2}")
            else:
                out.keep(doc)
    fast = StageContext("slow", 1, tmp_path / "b", (source,))
    stats = filter_rows(fast, "00000", source, lambda batch, first: [
        f"gone:{i % 2}" if i in drop_every else None for i in range(first, first + batch.num_rows)])

    assert stats.to_dict() == out.stats.to_dict()
    assert stats.kept == 2600 - len(drop_every) and stats.bytes_kept > 0
    assert fast.output_path("00000").read_bytes() == slow.output_path("00000").read_bytes()
    assert fast.dropped_path("00000").read_bytes() == slow.dropped_path("00000").read_bytes()
    assert pq.ParquetFile(str(fast.output_path("00000"))).metadata.num_row_groups > 2


def test_documents_of_a_batch():
    import pyarrow as pa

    from data_pipeline.records import DOCUMENT_SCHEMA, documents_of

    rows = [doc.to_row() for doc in _docs(5)]
    rows += [{"id": "x", "text": "t", "kind": "code", "meta": ""},
             {"id": "y", "text": "t", "kind": "text", "lang": "en", "source": None, "path": "p", "meta": None}]
    batch = pa.RecordBatch.from_pylist(rows, schema=DOCUMENT_SCHEMA)
    assert documents_of(batch) == [*_docs(5), Document("x", "t", "code", None, "", None, None, {}),
                                   Document("y", "t", "text", "en", "", "p", None, {})]
