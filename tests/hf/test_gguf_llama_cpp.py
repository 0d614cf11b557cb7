"""The GGUF export run by llama.cpp itself (through llama-cpp-python, built from the PyPI source package).

Slow: the first run builds llama.cpp with scripts/build_llama_cpp.sh into .cache/llama_cpp/ (~15 min on 2 busy cores);
later runs reuse it. Checks that llama.cpp tokenizes real code exactly as we do (both pre-tokenizer types), and that
a tiny random model with a trained tokenizer gives the same greedy tokens as `refact-generate` for a plain, a FIM
(PSM) and a chat prompt, with logits within LOGIT_TOL of ours (f32 export), with and without flash attention.
"""
import ctypes
import subprocess
import sys
import sysconfig
from pathlib import Path

import jinja2
import numpy as np
import pytest
import torch
from tokenizers import pre_tokenizers

from data_pipeline.tokenizer import chat_prompt_ids
from data_pipeline.fim import format_fim_prompt
from data_pipeline.tokenizer import train_bpe
from refact_train.cli.export import main as export_main
from refact_train.hf import save_hf_checkpoint
from refact_train.model import RefactConfig, RefactForCausalLM, generate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(5400)]

REPO_ROOT = Path(__file__).resolve().parents[2]
LLAMA_CPP_PYTHON = "0.3.36"
# max |llama.cpp - ours| / max |ours| over every position, f32 weights and f32 KV cache. Without flash attention
# the difference is float32 summation order (measured ~2e-6); ggml's CPU flash attention rounds to f16 inside
# (measured ~3e-4).
LOGIT_TOL = {False: 1e-5, True: 1e-3}
NEW_TOKENS = 24

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SNIPPETS = {
    "rust": 'fn main() {\n    let s = "héllo, 世界 🦀";\n    println!("{} {}", s.len(), 1_000_000u64);\n}\n',
    "go": 'package main\n\nimport "fmt"\n\n// Привет, мир: 12345 + 0x1F\nfunc main() {\n\tfmt.Println("日本語")\n}\n',
    "text": "Don't we'll they'RE — «quotes» naïve café e\u0301 ١٢٣ 3.14159e-10\r\n\ttabs   and  spaces  \n\n\n",
    "specials as text": "x = '<|endoftext|>' + \"<fim_prefix>\"  # not special inside code\n",
}


def real_code() -> dict[str, str]:
    """Source files of several languages that ship with Python and the project's dependencies."""
    import matplotlib

    files = {"python": STDLIB / "json" / "decoder.py", "python2": STDLIB / "textwrap.py",
             "c": Path(sysconfig.get_paths()["include"]) / "object.h",
             "javascript": Path(matplotlib.__file__).parent / "backends" / "web_backend" / "js" / "mpl.js"}
    texts = {lang: path.read_text(encoding="utf-8") for lang, path in files.items() if path.is_file()}
    assert {"python", "javascript"} <= texts.keys()
    return {**texts, **SNIPPETS}


@pytest.fixture(scope="module")
def llama_cpp():
    site = REPO_ROOT / ".cache" / "llama_cpp" / f"site-{LLAMA_CPP_PYTHON}"
    if not (site / "llama_cpp" / "__init__.py").is_file():
        done = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "build_llama_cpp.sh"), LLAMA_CPP_PYTHON],
                              capture_output=True, text=True, timeout=5000)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sys.path.insert(0, str(site))
    import llama_cpp

    return llama_cpp


@pytest.fixture(scope="module", params=["gpt-2", "refact"])
def exported(request, tmp_path_factory):
    """(HF dir, GGUF path, model, tokenizer): random weights, a BPE trained on real code; 'refact' adds the
    release's one-digit split in front of ByteLevel."""
    texts = real_code()
    tok = train_bpe([t for _ in range(3) for t in texts.values()], vocab_size=1500)
    if request.param == "refact":
        tok.tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    torch.manual_seed(0)
    cfg = RefactConfig(vocab_size=tok.padded_vocab_size, n_embd=96, n_head=6, n_layer=2, n_positions=512)
    model = RefactForCausalLM(cfg).eval()  # 6 heads: ALiBi's extra slopes for a head count not a power of two
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or ".ln_" in name or name.startswith("ln_f"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith(("wte.weight", "c_proj.weight")):
                p.add_(0.05)  # a mean in the residual writes, which the export must centre away
        model.lm_head.weight.mul_(20)  # decisive greedy choices
    root = tmp_path_factory.mktemp(request.param)
    hf = save_hf_checkpoint(model, root / "hf", tokenizer=tok)
    path = root / "model-f32.gguf"
    assert export_main([str(hf), str(path), "--format", "gguf", "--dtype", "f32"]) == 0
    return hf, path, model, tok


def open_gguf(llama_cpp, path, flash_attn=False):
    return llama_cpp.Llama(model_path=str(path), n_ctx=512, n_batch=512, n_threads=2, logits_all=True,
                           type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, flash_attn=flash_attn,
                           verbose=False)


def token_bytes(llama_cpp, vocab, ids) -> bytes:
    """What llama.cpp prints for these ids, piece by piece as its server streams them (llama_token_to_piece; the
    binding's own detokenize cuts pieces at 32 bytes)."""
    buf = (ctypes.c_char * 1024)()
    out = b""
    for i in ids:
        n = llama_cpp.llama_token_to_piece(vocab, i, buf, len(buf), 0, False)
        assert 0 <= n <= len(buf)
        out += bytes(buf[:n])
    return out


def test_llama_cpp_tokenizes_like_us(llama_cpp, exported):
    _, path, _, tok = exported
    llm = open_gguf(llama_cpp, path)
    assert llm.metadata["tokenizer.ggml.pre"] in ("gpt-2", "refact")
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    eog = [i for i in range(tok.vocab_size) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    # generation stops at <|endoftext|>, the chat turn token (our EOM), and the two llama.cpp finds by their text:
    # <fim_pad> and <reponame>, which it takes for its repository-level FIM token
    assert eog == [tok.eot_id, tok.fim_pad_id, tok.empty_output_id, tok.tokenizer.token_to_id("<reponame>")]
    assert llama_cpp.llama_vocab_fim_rep(vocab) == tok.tokenizer.token_to_id("<reponame>")
    assert (llama_cpp.llama_vocab_fim_pre(vocab), llama_cpp.llama_vocab_fim_suf(vocab),
            llama_cpp.llama_vocab_fim_mid(vocab)) == (tok.fim_prefix_id, tok.fim_suffix_id, tok.fim_middle_id)
    for lang, text in real_code().items():
        ours = tok.encode(text)
        theirs = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        assert theirs == ours, f"{lang}: first difference at token {first}: {tok.decode(ours[first:first + 5])!r}"
        assert token_bytes(llama_cpp, vocab, ours) == tok.decode_bytes(ours)
    prefix, suffix = "def mean(xs):\n    total = 0\n", "\n    return total / len(xs)  # 平均\n"
    psm = "<fim_prefix>" + prefix + "<fim_suffix>" + suffix + "<fim_middle>"
    assert llm.tokenize(psm.encode(), add_bos=False, special=True) == format_fim_prompt(prefix, suffix, tokenizer=tok)
    spm = "<fim_suffix>" + suffix + "<fim_prefix>" + prefix + "<fim_middle>"
    assert llm.tokenize(spm.encode(), add_bos=False, special=True) == \
        format_fim_prompt(prefix, suffix, order="spm", tokenizer=tok)
    messages = [{"role": "system", "content": "You are a programming assistant"},
                {"role": "user", "content": "Write fizzbuzz in Go. Спасибо!"}]
    chat = jinja2.Environment().from_string(llm.metadata["tokenizer.chat_template"]).render(
        messages=messages, add_generation_prompt=True)
    assert llm.tokenize(chat.encode(), add_bos=False, special=True) == chat_prompt_ids(tok, messages)


def llama_greedy(llm, prompt, stops):
    """Greedy decoding on llama.cpp's logits; returns (new ids, logits of every prompt position and step)."""
    llm.reset()
    llm.eval(prompt)
    out, rows = [], [np.array(llm.scores[:len(prompt)])]
    for _ in range(NEW_TOKENS):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        if nxt in stops:
            break
        out.append(nxt)
        llm.eval([nxt])
        rows.append(np.array(llm.scores[llm.n_tokens - 1:llm.n_tokens]))
    return out, np.concatenate(rows)


def refact_generate(hf, mode, *args):
    exe = [sys.executable, "-m", "refact_train.cli.generate", f"model={hf}", f"mode={mode}",
           f"max_new_tokens={NEW_TOKENS}", "dtype=float32", "device=cpu", *args]
    done = subprocess.run(exe, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.removesuffix("\n")


def test_llama_cpp_generates_our_tokens(llama_cpp, exported):
    hf, path, model, tok = exported
    prefix, suffix = "def mean(xs):\n    total = 0\n", "\n    return total / len(xs)\n"
    messages = [{"role": "system", "content": "You are a programming assistant"},
                {"role": "user", "content": "hello"}]
    cases = {  # mode: (prompt ids, stop ids, refact-generate arguments), as refact-generate builds them
        "plain": (tok.encode("import json\n"), (tok.eot_id,), ["prompt='import json\n'"]),
        "fim": (format_fim_prompt(prefix, suffix, tokenizer=tok), (tok.eot_id,),
                [f"prefix='{prefix}'", f"suffix='{suffix}'"]),
        "chat": (chat_prompt_ids(tok, messages), (tok.eot_id, tok.empty_output_id), ["prompt=hello"]),
    }
    for flash_attn in (False, True):  # llama.cpp's server picks flash attention automatically where it can
        llm = open_gguf(llama_cpp, path, flash_attn)
        for mode, (ids, stops, args) in cases.items():
            theirs, logits = llama_greedy(llm, ids, stops)
            ours = generate(model, [ids], NEW_TOKENS, stop_token_ids=stops)[0]
            assert theirs == ours, f"{mode} (flash_attn={flash_attn}): llama.cpp {theirs} vs ours {ours}"
            assert len(ours) >= 4, f"{mode}: the check needs a few generated tokens, got {ours}"
            with torch.no_grad():
                want = model(torch.tensor([ids + ours]))[0, :logits.shape[0]].numpy()
            rel = np.abs(logits - want).max() / np.abs(want).max()
            print(f"{mode} flash_attn={flash_attn}: {len(ours)} tokens equal, max logit error {rel:.2e} relative")
            assert rel < LOGIT_TOL[flash_attn], f"{mode}: logits differ by {rel:.2e} of their range"
            if not flash_attn:  # the CLI prints the decoded text of the same tokens, less the embedding's padding
                # rows (ids >= tok.vocab_size), which it never produces and llama.cpp's argmax here can pick
                real = generate(model, [ids], NEW_TOKENS, stop_token_ids=stops, vocab_size=tok.vocab_size)[0]
                assert theirs == real or any(i >= tok.vocab_size for i in theirs)
                assert refact_generate(hf, mode, *args) == tok.decode(real)
