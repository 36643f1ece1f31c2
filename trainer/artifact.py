"""Model artifact writer: transformers.js layout + PyTorch weights + ONNX (fp32, int8) + parity.

Layout written (see trainer/README.md):
  config.json, tokenizer.json, tokenizer_config.json, special_tokens_map.json  (transformers.js)
  onnx/model.onnx             fp32, inputs input_ids/attention_mask/token_type_ids, output last_hidden_state
  onnx/model_quantized.onnx   dynamic int8 (onnxruntime.quantization), for CPU serving (transformers.js dtype 'q8')
  pytorch/                    sentence-transformers directory (Transformer + the model's Pooling [+ Normalize]), with
                              config_sentence_transformers.json (prompts, default_prompt_name): the server reads
                              pooling and prompts from here (src/embed/st.ts: root modules.json, else pytorch/)
  model_card.json
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Iterable, Sequence

ONNX_OPSET = 17


def sha256_files(paths: Iterable[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _hf_parts(st_model):
    first = st_model[0]
    hf = first.auto_model
    tok = first.tokenizer
    return hf, tok


def export_onnx(hf_model_dir: str, onnx_path: str, opset: int = ONNX_OPSET) -> None:
    """Export a HF BERT-style encoder (saved at hf_model_dir) to ONNX with dynamic batch/sequence axes."""
    import torch
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(hf_model_dir, attn_implementation="eager")
    except (TypeError, ValueError):
        model = AutoModel.from_pretrained(hf_model_dir)
    model = model.float().cpu().eval()

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    wrap = Wrap(model).eval()
    # padded dummy batch: the attention mask has zeros, so no "all ones" shortcut is traced
    ids = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 14, 15, 3, 0, 0]], dtype=torch.long)
    ids = ids.clamp(max=model.config.vocab_size - 1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.long)
    tt = torch.zeros_like(ids)
    os.makedirs(os.path.dirname(onnx_path), exist_ok=True)
    dyn = {
        "input_ids": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "sequence_length"},
        "token_type_ids": {0: "batch_size", 1: "sequence_length"},
        "last_hidden_state": {0: "batch_size", 1: "sequence_length"},
    }
    kwargs: dict[str, Any] = dict(
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes=dyn,
        opset_version=opset,
        do_constant_folding=True,
    )
    with torch.no_grad():
        try:
            torch.onnx.export(wrap, (ids, mask, tt), onnx_path, dynamo=False, **kwargs)
        except TypeError:
            torch.onnx.export(wrap, (ids, mask, tt), onnx_path, **kwargs)
    # single-file model (no external data) so transformers.js loads it as-is
    import onnx

    m = onnx.load(onnx_path, load_external_data=True)
    for f in os.listdir(os.path.dirname(onnx_path)):
        if f.endswith(".data") or f.endswith("_data"):
            os.remove(os.path.join(os.path.dirname(onnx_path), f))
    onnx.save_model(m, onnx_path, save_as_external_data=False)
    onnx.checker.check_model(onnx_path)


def quantize_int8(onnx_path: str, out_path: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(onnx_path, out_path, weight_type=QuantType.QInt8)


POOLING_MODES = ("cls", "mean", "max", "lasttoken", "mean_sqrt_len_tokens", "weightedmean")
_LEGACY_POOLING = (("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max"),
                   ("pooling_mode_mean_tokens", "mean"), ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
                   ("pooling_mode_weightedmean_tokens", "weightedmean"), ("pooling_mode_lasttoken", "lasttoken"))


def _pooling_configs(model_dir: str):
    """The Pooling module's config.json of each sentence-transformers dir found at model_dir, then model_dir/pytorch."""
    for d in (model_dir, os.path.join(model_dir, "pytorch")):
        try:
            with open(os.path.join(d, "modules.json")) as f:
                mods = json.load(f)
            m = next((m for m in mods if str(m.get("type", "")).endswith("Pooling")), None)
            if m is None:
                continue
            with open(os.path.join(d, m.get("path", ""), "config.json")) as f:
                cfg = json.load(f)
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        yield cfg


def pooling_of_dir(model_dir: str) -> str:
    """The sentence-transformers pooling mode saved in model_dir (or model_dir/pytorch), "mean" when none is."""
    for cfg in _pooling_configs(model_dir):
        try:
            if "pooling_mode" in cfg:
                mode = cfg["pooling_mode"]
                return mode if isinstance(mode, str) else str(mode[0])
            return next((mode for key, mode in _LEGACY_POOLING if cfg.get(key)), "mean")
        except (ValueError, TypeError, AttributeError):
            continue
    return "mean"


def pooling_of_model(st_model) -> str:
    """The pooling mode of a loaded SentenceTransformer (its Pooling module), "mean" without one."""
    for m in st_model:
        if type(m).__name__ == "Pooling":
            mode = getattr(m, "pooling_mode", None)
            if isinstance(mode, str):
                return mode
            if isinstance(mode, (list, tuple)) and len(mode) == 1:
                return str(mode[0])
            return next((mode for key, mode in _LEGACY_POOLING if getattr(m, key, False)), "mean")
    return "mean"


DOC_PROMPT_NAMES = ("document", "passage", "corpus")


def resolve_prompts(prompts: dict | None, default_prompt_name: str | None = None) -> tuple[str, str]:
    """(query prompt, document prompt) texts, chosen the way the server chooses them (src/embed/st.ts promptFor)
    and sentence-transformers' encode_query / encode_document do: "query"; the first of "document", "passage",
    "corpus"; else the default prompt; else "" (no prompt)."""
    prompts = {k: ("" if v is None else v) for k, v in (prompts or {}).items()}

    def pick(names: Sequence[str]) -> str:
        for n in names:
            if n in prompts:
                return prompts[n]
        return prompts.get(default_prompt_name, "") if default_prompt_name else ""

    return pick(("query",)), pick(DOC_PROMPT_NAMES)


def prompts_of_model(st_model) -> tuple[str, str]:
    """(query prompt, document prompt) of a loaded SentenceTransformer; ("", "") for a model without prompts."""
    return resolve_prompts(getattr(st_model, "prompts", None), getattr(st_model, "default_prompt_name", None))


def prompts_of_dir(model_dir: str) -> tuple[str, str]:
    """(query prompt, document prompt) from config_sentence_transformers.json in model_dir (or model_dir/pytorch)."""
    for d in (model_dir, os.path.join(model_dir, "pytorch")):
        try:
            with open(os.path.join(d, "config_sentence_transformers.json")) as f:
                cfg = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(cfg, dict):
            return resolve_prompts(cfg.get("prompts") if isinstance(cfg.get("prompts"), dict) else None,
                                   cfg.get("default_prompt_name"))
    return "", ""


def include_prompt_of_model(st_model) -> bool:
    """False when the model's Pooling leaves the prompt tokens out (INSTRUCTOR-style)."""
    for m in st_model:
        if type(m).__name__ == "Pooling":
            return bool(getattr(m, "include_prompt", True))
    return True


def include_prompt_of_dir(model_dir: str) -> bool:
    for cfg in _pooling_configs(model_dir):
        try:
            return cfg.get("include_prompt", True) is not False
        except AttributeError:
            continue
    return True


def prompt_length(tokenizer, prompt: str) -> int:
    """Tokens of `prompt` as sentence-transformers counts them for include_prompt=False: the prompt tokenized alone
    (special tokens included), less a trailing special token (SEP / EOS)."""
    ids = tokenizer([prompt])["input_ids"][0]
    n = len(ids)
    if ids and ids[-1] in set(getattr(tokenizer, "all_special_ids", []) or []):
        n -= 1
    return n


class OnnxEncoder:
    """Pooled (the model's sentence-transformers pooling: cls / mean / max / ...), L2-normalized sentence
    embeddings from an exported ONNX encoder (CPU). pooling=None reads it from the artifact the ONNX file
    belongs to (<artifact>/onnx/model.onnx -> <artifact>/pytorch/modules.json), else mean; include_prompt=None
    likewise. encode(texts, prompt=...) prepends the prompt, as sentence-transformers' encode(prompt=...) does."""

    def __init__(self, onnx_path: str, tokenizer, max_seq_length: int = 256, threads: int = 0, pooling: str | None = None,
                 include_prompt: bool | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        self.tok = tokenizer
        self.max_len = max_seq_length
        art = os.path.dirname(os.path.dirname(os.path.abspath(onnx_path)))
        self.pooling = pooling or pooling_of_dir(art)
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling mode {self.pooling!r} not supported (known: {', '.join(POOLING_MODES)})")
        self.include_prompt = include_prompt_of_dir(art) if include_prompt is None else include_prompt

    def encode(self, texts: Sequence[str], batch_size: int = 64, prompt: str | None = None):
        import numpy as np

        texts = [prompt + t for t in texts] if prompt else list(texts)
        skip = 0 if self.include_prompt or not prompt else prompt_length(self.tok, prompt)
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tok(
                list(texts[i : i + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_len,
                return_tensors="np",
            )
            feeds = {
                "input_ids": enc["input_ids"].astype(np.int64),
                "attention_mask": enc["attention_mask"].astype(np.int64),
                "token_type_ids": enc.get("token_type_ids", np.zeros_like(enc["input_ids"])).astype(np.int64),
            }
            h = self.sess.run(["last_hidden_state"], feeds)[0]
            mask = feeds["attention_mask"]
            if skip:  # include_prompt=False: the prompt's tokens are left out of the pooling (right padding)
                mask = mask.copy()
                mask[:, :skip] = 0
            e = pool(h, mask, self.pooling)
            e = e / np.clip(np.linalg.norm(e, axis=1, keepdims=True), 1e-12, None)
            out.append(e.astype(np.float32))
        return np.concatenate(out, 0) if out else np.zeros((0, 0), np.float32)


def pool(h, mask, mode: str):
    """sentence-transformers' Pooling over [batch, tokens, hidden] with a right-padded attention mask."""
    import numpy as np

    m = mask.astype(np.float32)[..., None]
    rows = np.arange(h.shape[0])
    if mode == "cls":
        return h[rows, mask.argmax(1)]
    if mode == "lasttoken":
        return h[rows, mask.shape[1] - 1 - mask[:, ::-1].argmax(1)]
    if mode == "max":
        return np.where(m > 0, h, -np.inf).max(1)
    if mode == "weightedmean":
        w = m * np.arange(1, h.shape[1] + 1, dtype=np.float32)[None, :, None]
        return (h * w).sum(1) / np.clip(w.sum(1), 1e-9, None)
    s = (h * m).sum(1)
    n = np.clip(m.sum(1), 1e-9, None)
    return s / (np.sqrt(n) if mode == "mean_sqrt_len_tokens" else n)


def parity_sentences(n: int = 200, extra: Sequence[str] = ()) -> list[str]:
    base = [
        "mitochondrial genome maintenance",
        "The distribution of mitochondria into daughter cells after mitosis.",
        "Is a pressor necessary during aortic perfusion?",
        "a",
        "Flight nurses performed three manikin intubations in each of the two study environments.",
        "binding to a DNA sequence",
    ]
    out = list(extra)[: n]
    i = 0
    while len(out) < n:
        s = base[i % len(base)]
        out.append(s if i < len(base) else f"{s} {i}" * (1 + i % 7))
        i += 1
    return out[:n]


def reference_embeddings(st_model, sentences: Sequence[str], prompt: str = ""):
    """Normalized PyTorch embeddings (fp32, CPU) of `sentences` with `prompt` prepended ("": none, not even the
    model's default prompt): what onnx_parity compares an ONNX file against (one call serves several files)."""
    import torch

    orig_device = st_model.device
    st_model.to("cpu")
    st_model.float()  # the trainer keeps fp32 master weights
    with torch.no_grad():
        # prompt="": no default prompt on either side (the ONNX side embeds the raw sentences)
        ref = st_model.encode(list(sentences), batch_size=32, convert_to_numpy=True, normalize_embeddings=True, prompt=prompt)
    st_model.to(orig_device)
    return ref


def onnx_parity(st_model, onnx_path: str, sentences: Sequence[str], prompt: str = "", ref=None) -> float:
    """Max abs diff between normalized embeddings from PyTorch (fp32, CPU) and onnxruntime, both with `prompt`
    prepended ("": none, not even the model's default prompt). `ref`: reference_embeddings(st_model, sentences,
    prompt) when the caller has them already. The ONNX side runs in batches of 32 of like length (longest first, as
    sentence-transformers' encode orders them: batches still padded, with little padding to run through)."""
    import numpy as np

    _, tok = _hf_parts(st_model)
    sentences = list(sentences)
    if ref is None:
        ref = reference_embeddings(st_model, sentences, prompt)
    order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
    enc = OnnxEncoder(onnx_path, tok, st_model.max_seq_length, pooling=pooling_of_model(st_model),
                      include_prompt=include_prompt_of_model(st_model))
    got_sorted = enc.encode([sentences[i] for i in order], batch_size=32, prompt=prompt)
    got = np.empty_like(got_sorted)
    got[order] = got_sorted
    return float(np.abs(ref.astype(np.float64) - got.astype(np.float64)).max())


def write_artifact(
    st_model,
    out_dir: str,
    card: dict,
    *,
    quantize: bool = True,
    weights_fp16: bool = False,
    parity_texts: Sequence[str] = (),
    parity_tol: float = 1e-4,
) -> dict:
    """Write the full artifact into out_dir (which must not exist or be empty). Returns export info.

    Raises RuntimeError if ONNX parity exceeds parity_tol.
    """
    import torch

    os.makedirs(out_dir, exist_ok=True)
    pt_dir = os.path.join(out_dir, "pytorch")
    hf, tok = _hf_parts(st_model)
    st_model.to("cpu").float()
    st_model.save(pt_dir)
    if weights_fp16:
        # store trainable weights in fp16 to halve their size; loaders upcast to fp32
        from safetensors.torch import load_file, save_file

        sf = os.path.join(pt_dir, "model.safetensors")
        if os.path.exists(sf):
            sd = load_file(sf)
            save_file({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}, sf, metadata={"format": "pt"})
    # HF model dir for transformers.js: config + tokenizer at the root
    hf_tmp = os.path.join(out_dir, ".hf_export")
    hf.save_pretrained(hf_tmp)
    tok.save_pretrained(hf_tmp)
    for fn in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        p = os.path.join(hf_tmp, fn)
        if os.path.exists(p):
            shutil.copyfile(p, os.path.join(out_dir, fn))
    _patch_tokenizer_config(os.path.join(out_dir, "tokenizer_config.json"), st_model.max_seq_length)
    onnx_fp32 = os.path.join(out_dir, "onnx", "model.onnx")
    export_onnx(hf_tmp, onnx_fp32)
    shutil.rmtree(hf_tmp, ignore_errors=True)
    info: dict[str, Any] = {"onnx_opset": ONNX_OPSET}
    sents = parity_sentences(200, parity_texts)
    ref = reference_embeddings(st_model, sents)  # once, for the fp32 and the int8 file
    diff = onnx_parity(st_model, onnx_fp32, sents, ref=ref)
    info["onnx_parity_max_abs_diff"] = diff
    info["onnx_parity_n"] = len(sents)
    if not diff < parity_tol:
        raise RuntimeError(f"ONNX parity failed: max abs diff {diff:.3g} >= {parity_tol:g}")
    qp, dp = prompts_of_model(st_model)
    prompted = _prompted_parity(st_model, onnx_fp32, sents, qp, dp)
    if prompted:
        # the server prepends these prompts to queries / documents before the ONNX encoder: the same check with them
        info["onnx_parity_prompted"] = prompted
        worst = max(prompted.values())
        if not worst < parity_tol:
            raise RuntimeError(f"ONNX parity with the model's prompts failed: max abs diff {worst:.3g} >= {parity_tol:g}")
    if quantize:
        q = os.path.join(out_dir, "onnx", "model_quantized.onnx")
        quantize_int8(onnx_fp32, q)
        info["int8_parity_max_abs_diff"] = onnx_parity(st_model, q, sents, ref=ref)
    _check_st_files(pt_dir, st_model)
    card = dict(card)
    card.setdefault("pooling", pooling_of_model(st_model))
    # what the server prepends (read from pytorch/config_sentence_transformers.json; here for people reading the card)
    card.setdefault("prompts", {"query": qp, "document": dp})
    card.setdefault("normalize", True)  # serving L2-normalizes every vector (cosine index)
    card["dim"] = int(st_model.get_embedding_dimension() if hasattr(st_model, "get_embedding_dimension") else st_model.get_sentence_embedding_dimension())
    card["max_seq_length"] = int(st_model.max_seq_length)
    card["files"] = {
        "onnx_fp32": "onnx/model.onnx",
        "onnx_int8": "onnx/model_quantized.onnx" if quantize else None,
        "pytorch": "pytorch/",
    }
    card["export"] = info
    with open(os.path.join(out_dir, "model_card.json"), "w") as f:
        json.dump(card, f, indent=2)
    return info


def _prompted_parity(st_model, onnx_path: str, sents: Sequence[str], qp: str, dp: str) -> dict:
    """{"query": diff, "document": diff} of onnx_parity with each non-empty prompt, on up to 50 sentences."""
    out = {}
    for name, p in (("query", qp), ("document", dp)):
        if p:
            out[name] = onnx_parity(st_model, onnx_path, list(sents)[:50], prompt=p)
    return out


def _check_st_files(pt_dir: str, st_model) -> None:
    """The saved sentence-transformers directory must describe the model as it is served: the same pooling and
    prompts (the server reads them from <artifact>/pytorch/). Raises RuntimeError otherwise."""
    got_pool, want_pool = pooling_of_dir(pt_dir), pooling_of_model(st_model)
    got, want = prompts_of_dir(pt_dir), prompts_of_model(st_model)
    if got_pool != want_pool or got != want:
        raise RuntimeError(f"pytorch/ does not describe the model: pooling {got_pool!r} (model {want_pool!r}), "
                           f"prompts {got!r} (model {want!r})")


def _patch_tokenizer_config(path: str, max_len: int) -> None:
    """Make tokenizer_config.json explicit for transformers.js (class, lower-casing, max length)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        cfg = json.load(f)
    for k in ("is_local", "local_files_only"):
        cfg.pop(k, None)
    cfg.setdefault("tokenizer_class", "BertTokenizer")
    cfg["model_max_length"] = int(max_len)
    cfg.setdefault("do_lower_case", True)
    for k, v in (("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]"), ("unk_token", "[UNK]"), ("mask_token", "[MASK]")):
        cfg.setdefault(k, v)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)


def build_st_model(hf_dir: str, max_seq_length: int):
    """sentence-transformers model: Transformer + mean Pooling + Normalize."""
    from sentence_transformers import SentenceTransformer, models

    tr = models.Transformer(hf_dir, max_seq_length=max_seq_length)
    dim = tr.get_embedding_dimension() if hasattr(tr, "get_embedding_dimension") else tr.get_word_embedding_dimension()
    pool = models.Pooling(dim, pooling_mode="mean")
    return SentenceTransformer(modules=[tr, pool, models.Normalize()])


def export_existing(model_dir: str, quantize: bool = True, parity_tol: float = 1e-4) -> dict:
    """Re-export ONNX for an artifact that has pytorch/ weights (e.g. models/base, whose fp32 ONNX is not committed)."""
    import tempfile

    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(os.path.join(model_dir, "pytorch"), device="cpu", model_kwargs={"dtype": torch.float32})
    st.float()
    hf, tok = _hf_parts(st)
    with tempfile.TemporaryDirectory() as td:
        hf.save_pretrained(td)
        tok.save_pretrained(td)
        onnx_fp32 = os.path.join(model_dir, "onnx", "model.onnx")
        tmp = onnx_fp32 + ".tmp"
        export_onnx(td, tmp)
    sents = parity_sentences(200)
    ref = reference_embeddings(st, sents)
    diff = onnx_parity(st, tmp, sents, ref=ref)
    prompted = _prompted_parity(st, tmp, sents, *prompts_of_model(st))
    worst = max([diff, *prompted.values()])
    if not worst < parity_tol:
        os.remove(tmp)
        raise RuntimeError(f"ONNX parity failed: max abs diff {worst:.3g} >= {parity_tol:g}")
    os.replace(tmp, onnx_fp32)
    info: dict[str, Any] = {"onnx_parity_max_abs_diff": diff}
    if prompted:
        info["onnx_parity_prompted"] = prompted
    if quantize:
        q = os.path.join(model_dir, "onnx", "model_quantized.onnx")
        quantize_int8(onnx_fp32, q + ".tmp")
        os.replace(q + ".tmp", q)
        info["int8_parity_max_abs_diff"] = onnx_parity(st, q, sents, ref=ref)
    return info
