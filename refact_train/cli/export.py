"""refact-export CHECKPOINT_OR_HF_DIR OUT_DIR: a trainer checkpoint (any backend) or an HF directory of either
released revision -> an HF directory of the current revision that `transformers` loads; with `--format gguf`, one
.gguf file for llama.cpp instead (docs/gguf.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from refact_train.checkpoint import MARKER
from refact_train.hf import save_hf_checkpoint
from refact_train.hf.save import check_out_dir
from refact_train.hf.gguf import check_request, write_gguf
from refact_train.models import load_model_and_tokenizer, pick_dtype


def check_out_vs_source(out: Path, source: Path) -> None:
    """Refuse an OUT inside a trainer checkpoint (rotation deletes it with the step) or one that holds the source (the
    export replaces OUT whole)."""
    out, source = out.resolve(), source.resolve()
    step = next((d for d in (out, *out.parents) if (d / MARKER).is_file()), None)
    if step is not None:
        raise ValueError(f"{out} is inside the trainer checkpoint {step}, which checkpoint rotation deletes whole; "
                         f"write the export outside it")
    if out in source.parents:
        raise ValueError(f"{out} holds the source {source}, which replacing it would delete; choose another output")


def check_out_parent(out: Path) -> None:
    """Refuse an OUT under a file before the model loads (an OSError traceback after it before)."""
    blocker = next((d for d in out.parents if d.exists() and not d.is_dir()), None)
    if blocker is not None:
        raise ValueError(f"{out}: {blocker} is a file, so nothing can be written under it; choose another output path")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refact-export", description=__doc__)
    parser.add_argument("source", help="trainer checkpoint directory (or run dir) or HF directory")
    parser.add_argument("out_dir", help="HF directory to write (replaced if it exists), or the .gguf file")
    parser.add_argument("--format", choices=("hf", "gguf"), default="hf", help="hf (default) | gguf (llama.cpp)")
    parser.add_argument("--dtype", default="stored",
                        help="stored (default) | float32 | bfloat16 | float16; gguf: f32 | f16 | bf16 | q8_0")
    parser.add_argument("--drop-ln-f-bias", action="store_true", help="gguf: export a model whose ln_f has a bias "
                        "(llama.cpp's refact graph has none; not exact)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer to ship (default: the source's own)")
    parser.add_argument("--allow-other-tokenizer", action="store_true", help="ship --tokenizer although the source "
                        "was trained with another one")
    parser.add_argument("--max-shard-gb", type=float, default=2.0, help="shard safetensors above this size")
    args = parser.parse_args(argv)
    if not 0 < args.max_shard_gb < float("inf"):
        parser.error(f"--max-shard-gb must be a number of GB > 0, got {args.max_shard_gb}")
    try:
        dtype = None if args.dtype == "stored" or args.format == "gguf" else pick_dtype(args.dtype, "cpu")
        if args.format == "gguf":
            check_request(args.out_dir, args.dtype)  # a bad OUT or --dtype fails before the model loads
        else:
            check_out_dir(args.out_dir)
        check_out_parent(Path(args.out_dir))
        check_out_vs_source(Path(args.out_dir), Path(args.source))
        model, tokenizer = load_model_and_tokenizer(args.source, tokenizer_path=args.tokenizer,
                                                    allow_other_tokenizer=args.allow_other_tokenizer,
                                                    allow_flag="--allow-other-tokenizer")
        if args.format == "gguf":
            result = write_gguf(model, tokenizer, args.out_dir, args.dtype, drop_ln_f_bias=args.drop_ln_f_bias)
            print(f"refact-export: wrote {result.path} ({result.summary()})")
            return 0
        out = save_hf_checkpoint(model, args.out_dir, tokenizer=tokenizer, dtype=dtype,
                                 max_shard_bytes=int(args.max_shard_gb * 1024**3))
    except (OSError, ValueError, KeyError) as err:  # OSError: a full disk, no permission (it names the file)
        print(f"refact-export: {err}", file=sys.stderr)
        return 2
    print(f"refact-export: wrote {out} ({model.num_parameters():,} parameters"
          f"{', with tokenizer' if tokenizer is not None else ', no tokenizer found: pass --tokenizer'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
