"""Deduplication stages: `exact` (hash of normalised content) and `near_dedup` (MinHash LSH, BigCode's recipe).

Both scale past one machine's memory the same way: a per-shard hashing step, a grouping step sharded by hash
bucket / LSH band, then a per-shard filter pass (data_pipeline/stage.py describes the protocol).
"""
