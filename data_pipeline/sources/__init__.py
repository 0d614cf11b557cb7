"""Inputs of the pipeline: directories and git repositories (files.py), JSONL / Parquet / HF datasets (tables.py),
licence detection (licenses.py), language detection (languages.py); the ingest stage (ingest.py)."""
from data_pipeline.sources.files import FileRules, Skipped, read_file, walk
from data_pipeline.sources.languages import classify, shebang_language
from data_pipeline.sources.licenses import license_from_text, repository_license, spdx_from_header
from data_pipeline.sources.ingest import InputError, detect_format, validate_inputs

__all__ = [
    "FileRules", "Skipped", "read_file", "walk", "classify", "shebang_language", "license_from_text",
    "repository_license", "spdx_from_header", "InputError", "detect_format", "validate_inputs",
]
