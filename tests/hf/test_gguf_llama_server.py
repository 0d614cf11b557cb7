"""Our GGUF export served by llama.cpp's own HTTP server, `llama-server`: /infill (PSM, and SPM with --spm-infill)
and /completion, greedy, against our model.

Slow, and skipped unless scripts/build_llama_server.sh has built the server into .cache/llama_cpp/. Uses the tiny
random model with a BPE trained on real code from tests/hf/test_gguf_llama_cpp.py (f32 export, both pre-tokenizer
types) and checks, per endpoint, that the server's prompt is our served prompt token for token (data_pipeline/fim.py
builds ours) and that its greedy tokens are the ones our model generates for that prompt.
"""
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from data_pipeline.fim import format_fim_prompt
from refact_train.model import generate
from test_gguf_llama_cpp import exported  # noqa: F401  (the module-scoped fixture: HF dir, GGUF, model, tokenizer)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSION = "0.3.36"  # llama-cpp-python's source package, whose vendored llama.cpp the script builds
SERVER = REPO_ROOT / ".cache" / "llama_cpp" / f"llama-server-{VERSION}"
NEW_TOKENS = 24
CTX = 512  # the tiny model's n_positions
PREFIX, SUFFIX = "def mean(xs):\n    total = 0\n", "\n    return total / len(xs)  # 平均\n"


@pytest.fixture(scope="module")
def server_binary() -> Path:
    if not SERVER.is_file():
        pytest.skip(f"llama-server is not built: run `bash scripts/build_llama_server.sh` (~6 min on 2 cores) to "
                    f"build .cache/llama_cpp/{SERVER.name}")
    return SERVER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


@contextmanager
def llama_server(binary: Path, gguf: Path, log: Path, *flags: str):
    """A running llama-server on a free 127.0.0.1 port, f32 KV cache (exact); yields its URL, stops it by PID."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
                                 "-t", "2", "-np", "1", "-ctk", "f32", "-ctv", "f32", *flags],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"llama-server exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass  # not listening yet, or 503 while the model loads
            assert time.monotonic() < deadline, f"llama-server not healthy after 120 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


GREEDY = {"n_predict": NEW_TOKENS, "temperature": 0, "top_k": 1, "return_tokens": True, "cache_prompt": False}


def served_prompt(url: str, reply: dict) -> list[int]:
    """The ids the server evaluated: its reply carries the prompt as text (special tokens written out), which its
    own tokenizer turns back into ids; the count must be the one it reports."""
    ids = post(url + "/tokenize", {"content": reply["prompt"], "add_special": False, "parse_special": True})["tokens"]
    assert len(ids) == reply["tokens_evaluated"], (ids, reply["tokens_evaluated"])
    return ids


def check_greedy(reply: dict, model, prompt: list[int], eog: tuple[int, ...], what: str) -> list[int]:
    ours = generate(model, [prompt], NEW_TOKENS, stop_token_ids=eog)[0]
    theirs = reply["tokens"]
    if reply["stop_type"] == "eos":  # the server lists the end-of-generation token it stopped at
        assert theirs[-1] in eog, (what, theirs)
        theirs = theirs[:-1]
    else:
        assert reply["stop_type"] == "limit", (what, reply["stop_type"])
    assert theirs == ours, f"{what}: llama-server {theirs} vs ours {ours}"
    assert len(ours) >= 4, f"{what}: the check needs a few generated tokens, got {ours}"
    print(f"{what}: {len(prompt)} prompt tokens, {len(ours)} generated tokens equal (stop: {reply['stop_type']})")
    return ours


def test_llama_server_serves_our_fim_and_completion(server_binary, exported, tmp_path):  # noqa: F811
    _, gguf, model, tok = exported
    # llama.cpp ends generation at each of these (tests/hf/test_gguf_llama_cpp.py checks the list)
    eog = (tok.eot_id, tok.fim_pad_id, tok.empty_output_id, tok.tokenizer.token_to_id("<reponame>"))
    psm = format_fim_prompt(PREFIX, SUFFIX, order="psm", tokenizer=tok)
    spm = format_fim_prompt(PREFIX, SUFFIX, order="spm", spm_variant="served", tokenizer=tok)
    plain = "import json\n"
    # -b equal to -c and an explicit -n: llama.cpp puts nothing in front of the FIM prompt (see the last case)
    exact = ("-c", str(CTX), "-b", str(CTX), "-n", str(NEW_TOKENS))
    fim = {"input_prefix": PREFIX, "input_suffix": SUFFIX, **GREEDY}

    with llama_server(server_binary, gguf, tmp_path / "psm.log", *exact) as url:
        reply = post(url + "/infill", fim)
        assert served_prompt(url, reply) == psm
        ours = check_greedy(reply, model, psm, eog, "/infill PSM")
        # the text too: the embedding's padding rows are unused entries that print nothing, and a byte that is not
        # UTF-8 on its own (a random model writes some) comes back as U+FFFD
        shown = tok.decode_bytes([i for i in ours if i < tok.vocab_size]).decode("utf-8", errors="replace")
        assert reply["content"] == shown

        reply = post(url + "/completion", {"prompt": plain, **GREEDY})
        assert served_prompt(url, reply) == tok.encode(plain)
        check_greedy(reply, model, tok.encode(plain), eog, "/completion")

        # the training prompt written out as text: its special tokens are parsed, nothing is added in front
        reply = post(url + "/completion", {"prompt": tok.decode(psm), **GREEDY})
        assert served_prompt(url, reply) == psm
        check_greedy(reply, model, psm, eog, "/completion with the PSM text")

    with llama_server(server_binary, gguf, tmp_path / "spm.log", *exact, "--spm-infill") as url:
        reply = post(url + "/infill", fim)
        assert served_prompt(url, reply) == spm
        check_greedy(reply, model, spm, eog, "/infill --spm-infill")

    # Without -n (the server's n_predict; a request's n_predict does not count) llama.cpp fills
    # c - b - 2*n = c - b + 2 tokens of its repository context in front of the FIM prompt: the tail of
    # `<reponame>myproject\n` (it takes our <reponame> for its FIM repository token).
    repo = [tok.tokenizer.token_to_id("<reponame>")] + tok.encode("myproject\n")
    for flags, extra in ((("-c", str(CTX), "-b", str(CTX)), 2), (("-c", str(CTX), "-b", str(CTX // 2)), len(repo))):
        with llama_server(server_binary, gguf, tmp_path / "repo.log", *flags) as url:
            reply = post(url + "/infill", fim)
            assert served_prompt(url, reply) == repo[len(repo) - extra:] + psm, flags
