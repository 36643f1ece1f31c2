"""Candidate embeddings made on the training machine: job.json "embed_corpus".

After the artifact is exported, every corpus.jsonl row (or every row of the bundle's optional embed.jsonl, e.g. the
chunk texts the server indexes) is embedded with the final model, so that the server can swap a candidate model in
without re-embedding its whole corpus on its own CPU. Written into the artifact (OUT/embeddings/):

  vectors.f32    float32 little-endian, count x dim, row i = ids[i]
  ids.json       JSON array of the ids, in row order
  manifest.json  {"format": "f32le", "dim", "count", "normalized": true, "max_seq_length", "pooling", "prompt",
                  "sha256": {"vectors.f32", "ids.json"}, "seconds", "device", "dtype_compute", "source",
                  "batch_size", "fp32_check": {"n", "max_abs_diff"} | null, "fp32_recomputed_rows"}

The vectors are what serving computes for an ingested document: the model's document prompt prepended (its
"document" / "passage" / "corpus" prompt, else its default prompt, else none: src/embed/st.ts promptFor; "prompt"
in the manifest), the same tokenizer and truncation (the model's max_seq_length), the model's pooling over the
attention mask (mean, cls, ...; without the prompt's tokens when the Pooling has include_prompt false) and L2
normalization (the artifact's Transformer + Pooling [+ Normalize] modules). On a GPU
the encoder runs under fp16 (or bf16) autocast; torch runs layer norms, and so the last hidden state, the pooling
and the normalization, in fp32 there, and the vectors are re-normalized in fp32. `fp32_check` measures the result
against a plain fp32 forward on up to 128 rows spread over the input.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Callable, Sequence

DTYPES = ("float16", "bfloat16", "float32")
SPEC_DEFAULTS: dict[str, Any] = {"dtype": "float16", "batch_size": 256, "chunk": 32768}


def normalize_spec(raw: Any) -> dict | None:
    """job.json embed_corpus: false/null (off) | true (defaults) | {"dtype", "batch_size"}. BundleError on bad values."""
    from .data import BundleError, job_option

    spec = job_option(raw, "embed_corpus", SPEC_DEFAULTS, known=("dtype", "batch_size"))
    if spec is None:
        return None
    if spec["dtype"] not in DTYPES:
        raise BundleError(f"job.json: 'embed_corpus.dtype' must be one of {', '.join(DTYPES)}, got {spec['dtype']!r}")
    bs = spec["batch_size"]
    if isinstance(bs, bool) or not isinstance(bs, (int, float)) or int(bs) != bs or not 1 <= bs <= 8192:
        raise BundleError("job.json: 'embed_corpus.batch_size' must be an integer in [1, 8192]")
    spec["batch_size"] = int(bs)
    return spec


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _forward(model, tok, ids_batch: list[dict], device: str, autocast_dtype, prompt_len: int = 0):
    """Sentence embeddings (fp32, L2-normalized) of pre-tokenized rows, padded to the batch's longest. prompt_len > 0:
    the rows start with a prompt of that many tokens, which a Pooling with include_prompt false leaves out."""
    import torch

    feats = tok.pad(ids_batch, padding=True, return_tensors="pt")
    feats = {k: v.to(device) for k, v in feats.items()}
    if prompt_len:
        feats["prompt_length"] = prompt_len
    with torch.inference_mode():
        if autocast_dtype is not None:
            with torch.autocast(device_type="cuda", dtype=autocast_dtype):
                emb = model(feats)["sentence_embedding"]
        else:
            emb = model(feats)["sentence_embedding"]
        emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
    return emb


def embed_rows(model, ids: Sequence[str], texts: Sequence[str], out_dir: str, device: str, spec: dict | None = None,
               source: str = "corpus.jsonl", progress: Callable[[int, int], None] | None = None) -> dict:
    """Embed `texts` with `model` (a SentenceTransformer) and write vectors.f32, ids.json, manifest.json into out_dir.
    Returns the manifest."""
    import numpy as np
    import torch

    from .artifact import include_prompt_of_model, pooling_of_model, prompt_length, prompts_of_model

    spec = dict(SPEC_DEFAULTS, **(spec or {}))
    if len(ids) != len(texts) or not texts:
        raise ValueError("embed_rows: ids and texts must be non-empty and of equal length")
    prompt = prompts_of_model(model)[1]
    if prompt:
        texts = [prompt + t for t in texts]
    prompt_len = prompt_length(model.tokenizer, prompt) if prompt and not include_prompt_of_model(model) else 0
    t0 = time.time()
    model.eval()
    tok = model.tokenizer
    max_len = int(model.max_seq_length)
    autocast_dtype = None
    dtype_name = "float32"
    if device == "cuda" and spec["dtype"] != "float32":
        if spec["dtype"] == "bfloat16" and not torch.cuda.is_bf16_supported():
            spec["dtype"] = "float16"
        autocast_dtype = getattr(torch, spec["dtype"])
        dtype_name = spec["dtype"]
    bs = spec["batch_size"]
    n = len(texts)
    vectors = None
    recomputed = 0
    done = 0
    # tokenized a chunk at a time (token id lists of a million passages would not fit comfortably in memory), each
    # chunk sorted by token length so that a batch pads to little more than its own texts
    for c0 in range(0, n, spec["chunk"]):
        chunk = list(texts[c0:c0 + spec["chunk"]])
        enc = tok(chunk, truncation=True, max_length=max_len, padding=False)
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
        order = sorted(range(len(chunk)), key=lambda i: -len(enc["input_ids"][i]))
        for b0 in range(0, len(order), bs):
            idx = order[b0:b0 + bs]
            rows = [{k: enc[k][i] for k in keys} for i in idx]
            emb = _forward(model, tok, rows, device, autocast_dtype, prompt_len)
            bad = ~torch.isfinite(emb).all(dim=1)
            if autocast_dtype is not None and bool(bad.any()):
                # a half-precision overflow in some row: that row again in fp32
                sel = bad.nonzero().flatten().tolist()
                emb[bad] = _forward(model, tok, [rows[i] for i in sel], device, None, prompt_len)
                recomputed += len(sel)
            arr = emb.cpu().numpy()
            if vectors is None:
                vectors = np.empty((n, arr.shape[1]), dtype="<f4")
            vectors[[c0 + i for i in idx]] = arr
            done += len(idx)
            if progress is not None:
                progress(done, n)
    assert vectors is not None
    if not np.isfinite(vectors).all():
        raise RuntimeError("embed_corpus: non-finite embeddings")
    fp32_check = None
    if autocast_dtype is not None:
        # the half-precision vectors against a plain fp32 forward, on rows spread over the input
        sample = sorted({int(i) for i in np.linspace(0, n - 1, num=min(128, n))})
        enc = tok([texts[i] for i in sample], truncation=True, max_length=max_len, padding=False)
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
        ref = _forward(model, tok, [{k: enc[k][j] for k in keys} for j in range(len(sample))], device, None, prompt_len)
        fp32_check = {"n": len(sample),
                      "max_abs_diff": float(np.abs(ref.cpu().numpy() - vectors[sample]).max())}
    os.makedirs(out_dir, exist_ok=True)
    vpath, ipath = os.path.join(out_dir, "vectors.f32"), os.path.join(out_dir, "ids.json")
    vectors.tofile(vpath)
    with open(ipath, "w", encoding="utf-8") as f:
        json.dump([str(i) for i in ids], f, ensure_ascii=False)
    if device == "cuda":
        dev = torch.cuda.get_device_name(0)
    else:
        import platform

        dev = f"cpu ({platform.processor() or platform.machine()})"
    manifest = {"format": "f32le", "dim": int(vectors.shape[1]), "count": n, "normalized": True,
                "max_seq_length": max_len, "pooling": pooling_of_model(model), "prompt": prompt,
                "sha256": {"vectors.f32": sha256_file(vpath), "ids.json": sha256_file(ipath)},
                "seconds": round(time.time() - t0, 3), "device": dev, "dtype_compute": dtype_name,
                "source": source, "batch_size": bs, "fp32_check": fp32_check, "fp32_recomputed_rows": recomputed}
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def read_embeddings(dir_: str):
    """(ids, float32 array count x dim) of an embeddings/ directory, checked against its manifest."""
    import numpy as np

    with open(os.path.join(dir_, "manifest.json"), encoding="utf-8") as f:
        m = json.load(f)
    for name, digest in m["sha256"].items():
        if sha256_file(os.path.join(dir_, name)) != digest:
            raise ValueError(f"{name}: sha256 mismatch")
    with open(os.path.join(dir_, "ids.json"), encoding="utf-8") as f:
        ids = json.load(f)
    vec = np.fromfile(os.path.join(dir_, "vectors.f32"), dtype="<f4").reshape(m["count"], m["dim"])
    if len(ids) != m["count"]:
        raise ValueError("ids.json length != manifest count")
    return ids, vec
