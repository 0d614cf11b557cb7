"""Import of released / HF Refact checkpoints (either revision) and export to HF format."""
from refact_train.hf.load import load_hf_checkpoint
from refact_train.hf.revisions import detect_revision, to_current_names, to_earlier_names
from refact_train.hf.save import save_hf_checkpoint

__all__ = ["detect_revision", "load_hf_checkpoint", "save_hf_checkpoint", "to_current_names", "to_earlier_names"]
