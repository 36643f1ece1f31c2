#!/usr/bin/env python3
"""Sentence-transformers test fixtures for the serving side (issue 13), built from scratch (no hub access).

  python3 scripts/gpu/st_fixtures.py --out /tmp/st_fixtures          # tarball -> $OUT/st_fixtures.tar.gz

Every model is a random-init BertModel (2 layers, hidden 64) on the tokenizer of test/fixtures/models/tiny,
saved by sentence-transformers itself, with ONNX exported the way the trainer exports it (trainer/artifact.py).
Weights are rounded to fp16-representable values first (lossless fp16 copies, smaller tarball).

  st-bge-tiny/       bge-style: CLS pooling + Normalize, prompts {"query": <bge instruction>}, max_seq_length 64
                     onnx/model.onnx (fp32), model_quantized.onnx (int8 dynamic), model_fp16.onnx (if it converts)
  st-e5-tiny/        e5-style: mean pooling, no Normalize, prompts {"query": "query: ", "document": "passage: "},
                     max_seq_length 128; onnx/model.onnx + model_quantized.onnx
  st-max-noprompt/   max pooling, include_prompt false, default_prompt_name "query", no Normalize, max_seq_length 32;
                     ONNX fp32 only, no PyTorch weights (serving-only fixture)
  st-bge-tiny-ft/    what trainer/artifact.write_artifact makes from st-bge-tiny after "fine-tuning" (weights
                     perturbed): transformers.js layout at the root + pytorch/ (ST dir) + onnx/ + model_card.json
  hub/models--fixture-org--st-bge-tiny/   st-bge-tiny as a Hugging Face hub cache (blobs/, snapshots/<rev>/, refs/main)
  references.json    sentence-transformers' own embeddings per model: queries and passages, each with the prompt
                     ST resolves (encode_query / encode_document / encode with explicit prompt_name / plain encode)
  manifest.json      versions, file sizes, ONNX parity (fp32 max abs diff, q8/fp16 min cosine) and checks

Robust by design (one run): every optional step is wrapped and recorded in manifest.json["errors"]; the
tarball is written even when a check fails. Only a failure to build the two main models exits non-zero.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tarfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

HUB_ORG = "fixture-org"
BGE_PROMPT = "Represent this sentence for searching relevant passages: "
MAX_TAR_BYTES = 16 * 1024 * 1024 - 256 * 1024  # the device returns files up to 16 MiB

QUERIES = [
    "what is the function of mitochondria",
    "DNA binding",
    "Is a pressor necessary during aortic perfusion?",
    "protein kinase activity in the cell cycle",
    "Café au lait spots: naïve question about skin pigmentation",
    "how do flight nurses intubate patients",
]

PASSAGES = [
    "The distribution of mitochondria, including the mitochondrial genome, into daughter cells after mitosis or meiosis.",
    "Interacting selectively and non-covalently with any DNA (deoxyribonucleic acid).",
    "Flight nurses performed three manikin intubations in each of the two study environments.",
    "Catalysis of the phosphorylation of an amino acid residue in a protein, usually according to the reaction: "
    "a protein + ATP = a phosphoprotein + ADP.",
    "membrane",
    # longer than every fixture's max_seq_length (truncation must keep the final [SEP], like Python does)
    " ".join(
        ["Any process that modulates the frequency, rate or extent of cell proliferation in response to an external "
         "stimulus, including the regulation of the cell cycle, programmed cell death and differentiation of cells "
         "in multicellular organisms, as observed in tissue culture and in vivo."] * 3
    ),
]


def log(msg: str) -> None:
    print(f"[st_fixtures] {msg}", file=sys.stderr, flush=True)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_under(root: str) -> list[str]:
    out = []
    for d, _, fs in os.walk(root):
        for f in fs:
            out.append(os.path.relpath(os.path.join(d, f), root))
    return sorted(out)


def hub_cache(src_dir: str, cache_root: str, repo_id: str) -> dict:
    """Lay src_dir out as a Hugging Face hub cache entry: blobs/<sha256>, snapshots/<rev>/<file> -> ../../blobs/..,
    refs/main = <rev>. Blobs are hard links to src_dir's files where the filesystem allows (the tarball then
    stores them once), else copies. Pure Python, no torch."""
    org, name = repo_id.split("/", 1)
    entry = os.path.join(cache_root, f"models--{org}--{name}")
    files = files_under(src_dir)
    digests = {f: sha256(os.path.join(src_dir, f)) for f in files}
    rev = hashlib.sha1("".join(f"{f}:{digests[f]}\n" for f in files).encode()).hexdigest()
    snap = os.path.join(entry, "snapshots", rev)
    os.makedirs(os.path.join(entry, "blobs"), exist_ok=True)
    os.makedirs(os.path.join(entry, "refs"), exist_ok=True)
    for f in files:
        blob = os.path.join(entry, "blobs", digests[f])
        if not os.path.exists(blob):
            try:
                os.link(os.path.join(src_dir, f), blob)
            except OSError:
                shutil.copyfile(os.path.join(src_dir, f), blob)
        link = os.path.join(snap, f)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
    with open(os.path.join(entry, "refs", "main"), "w") as fh:
        fh.write(rev)  # no trailing newline, like huggingface_hub
    return {"repo_id": repo_id, "entry": os.path.relpath(entry, os.path.dirname(cache_root)), "revision": rev, "files": files}


def make_tar(src: str, dest: str) -> int:
    tmp = dest + ".tmp"
    with tarfile.open(tmp, "w:gz", compresslevel=9) as tf:
        tf.add(src, arcname=os.path.basename(src.rstrip("/")))
    os.replace(tmp, dest)
    return os.path.getsize(dest)


# ---------------------------------------------------------------------------------------------- torch parts


def round_fp16_(model) -> None:
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))


def build_st(tokenizer_dir: str, work: str, name: str, *, seed: int, init_range: float, pooling: str,
             normalize: bool, max_seq_length: int, prompts: dict, default_prompt_name, include_prompt: bool = True):
    """Random-init BERT -> HF dir -> sentence-transformers model (Transformer + Pooling [+ Normalize])."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    try:  # sentence-transformers >= 6 module paths; older ones below
        from sentence_transformers.base.modules.normalize import Normalize
        from sentence_transformers.base.modules.transformer import Transformer
        from sentence_transformers.sentence_transformer.modules.pooling import Pooling
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=256, max_position_embeddings=512, type_vocab_size=2, pad_token_id=0,
                     initializer_range=init_range, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    bert = BertModel(cfg).eval()
    round_fp16_(bert)
    hf_dir = os.path.join(work, f".hf-{name}")
    shutil.rmtree(hf_dir, ignore_errors=True)
    bert.save_pretrained(hf_dir)
    tok.save_pretrained(hf_dir)
    tr = Transformer(hf_dir, max_seq_length=max_seq_length)
    dim = tr.get_embedding_dimension() if hasattr(tr, "get_embedding_dimension") else tr.get_word_embedding_dimension()
    mods = [tr, Pooling(dim, pooling_mode=pooling, include_prompt=include_prompt)]
    if normalize:
        mods.append(Normalize())
    st = SentenceTransformer(modules=mods, prompts=prompts, default_prompt_name=default_prompt_name, device="cpu")
    st.max_seq_length = max_seq_length
    return st, hf_dir


def load_st(path: str):
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(path, device="cpu", model_kwargs={"dtype": torch.float32})
    st.float()
    return st


def st_config(st) -> dict:
    """What the loaded ST model says about itself (the serving side must agree with this)."""
    pooling, include_prompt, normalize = None, None, False
    for m in st:
        cls = type(m).__name__
        if cls == "Pooling":
            pooling = m.pooling_mode if hasattr(m, "pooling_mode") else None
            include_prompt = bool(getattr(m, "include_prompt", True))
        if cls == "Normalize":
            normalize = True
    return {"pooling": pooling if isinstance(pooling, str) else list(pooling or []), "include_prompt": include_prompt,
            "normalize": normalize, "max_seq_length": int(st.max_seq_length), "prompts": dict(st.prompts),
            "default_prompt_name": st.default_prompt_name, "modules": [type(m).__name__ for m in st]}


def encode(st, texts, **kw):
    import numpy as np

    v = st.encode(list(texts), batch_size=64, convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False, **kw)
    return np.asarray(v, dtype=np.float32)


def references(st, errors: list, tag: str) -> dict:
    """ST's embeddings: queries via encode_query, passages via encode_document, every prompt name explicitly,
    and plain encode() (the default prompt, if any)."""
    cases = []

    def add(case, texts, fn, prompt_name, prompt):
        try:
            vecs = fn()
            cases.append({"case": case, "texts": list(texts), "prompt_name": prompt_name, "prompt": prompt,
                          "vectors": [[float(x) for x in row] for row in vecs]})
        except Exception as e:  # noqa: BLE001
            errors.append(f"{tag}: reference case {case}: {e!r}")

    prompts = dict(st.prompts)
    # the prompt ST resolves for encode_query / encode_document (sentence_transformer/model.py)
    qname = "query" if "query" in prompts else None
    dname = next((n for n in ("document", "passage", "corpus") if n in prompts), None)
    qname_eff = qname if qname is not None else st.default_prompt_name
    dname_eff = dname if dname is not None else st.default_prompt_name
    if hasattr(st, "encode_query"):
        add("encode_query", QUERIES, lambda: encode_fn(st, "encode_query", QUERIES), qname_eff, prompts.get(qname_eff) if qname_eff else None)
        add("encode_document", PASSAGES, lambda: encode_fn(st, "encode_document", PASSAGES), dname_eff, prompts.get(dname_eff) if dname_eff else None)
    for pn, ptext in prompts.items():
        add(f"prompt_name:{pn}:queries", QUERIES, lambda pn=pn: encode(st, QUERIES, prompt_name=pn), pn, ptext)
        add(f"prompt_name:{pn}:passages", PASSAGES, lambda pn=pn: encode(st, PASSAGES, prompt_name=pn), pn, ptext)
    dflt = st.default_prompt_name
    add("plain", QUERIES + PASSAGES, lambda: encode(st, QUERIES + PASSAGES), dflt, prompts.get(dflt) if dflt else None)
    add("no_prompt", QUERIES + PASSAGES, lambda: encode(st, QUERIES + PASSAGES, prompt=""), None, "")
    return {"config": st_config(st), "cases": cases}


def encode_fn(st, method: str, texts):
    import numpy as np

    v = getattr(st, method)(list(texts), batch_size=64, convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False)
    return np.asarray(v, dtype=np.float32)


def export(st_dir: str, errors: list, tag: str, *, q8: bool, fp16: bool) -> dict:
    from trainer.artifact import export_onnx, quantize_int8

    out = {}
    fp32 = os.path.join(st_dir, "onnx", "model.onnx")
    export_onnx(st_dir, fp32)
    out["fp32"] = "onnx/model.onnx"
    if q8:
        try:
            quantize_int8(fp32, os.path.join(st_dir, "onnx", "model_quantized.onnx"))
            out["q8"] = "onnx/model_quantized.onnx"
        except Exception as e:  # noqa: BLE001
            errors.append(f"{tag}: int8 quantization: {e!r}")
    if fp16:
        p16 = os.path.join(st_dir, "onnx", "model_fp16.onnx")
        try:
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16

            m16 = convert_float_to_float16(onnx.load(fp32), keep_io_types=True)
            onnx.save_model(m16, p16, save_as_external_data=False)
            out["fp16"] = "onnx/model_fp16.onnx"
        except Exception as e:  # noqa: BLE001
            errors.append(f"{tag}: fp16 conversion: {e!r}")
            if os.path.exists(p16):
                os.remove(p16)
    return out


def onnx_embed(onnx_path: str, st, texts, prompt: str | None):
    """Serving-side re-implementation in numpy (what the TS server must match): prompt + text, tokenize with
    truncation at max_seq_length, run, pool per the ST Pooling config (prompt tokens masked when
    include_prompt is false), no normalization here."""
    import numpy as np
    import onnxruntime as ort

    cfg = st_config(st)
    tok = st[0].tokenizer
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    full = [(prompt or "") + t for t in texts]
    enc = tok(full, padding=True, truncation=True, max_length=cfg["max_seq_length"], return_tensors="np")
    feeds = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64),
             "token_type_ids": np.zeros_like(enc["input_ids"], dtype=np.int64)}
    names = {i.name for i in sess.get_inputs()}
    h = sess.run(None, {k: v for k, v in feeds.items() if k in names})[0].astype(np.float64)
    mask = feeds["attention_mask"].astype(np.float64).copy()
    if prompt and cfg["include_prompt"] is False:
        ids = tok([prompt], return_tensors="np")["input_ids"][0]
        plen = len(ids) - (1 if int(ids[-1]) in set(tok.all_special_ids) else 0)
        mask[:, :plen] = 0
    mode = cfg["pooling"]
    if mode == "cls":
        first = mask.argmax(1)
        e = h[np.arange(len(h)), first]
    elif mode == "mean":
        e = (h * mask[..., None]).sum(1) / np.clip(mask.sum(1, keepdims=True), 1e-9, None)
    elif mode == "max":
        e = np.where(mask[..., None] > 0, h, -np.inf).max(1)
    elif mode == "lasttoken":
        last = mask.shape[1] - 1 - mask[:, ::-1].argmax(1)
        e = h[np.arange(len(h)), last]
    else:
        raise ValueError(f"pooling {mode!r} not in the parity check")
    if cfg["normalize"]:
        e = e / np.clip(np.linalg.norm(e, axis=1, keepdims=True), 1e-12, None)
    return e.astype(np.float32)


def parity(st_dir: str, st, refs: dict, files: dict, errors: list, tag: str) -> dict:
    import numpy as np

    out = {}
    for dtype, rel in files.items():
        worst_abs, worst_cos = 0.0, 1.0
        try:
            for c in refs["cases"]:
                ref = np.asarray(c["vectors"], dtype=np.float64)
                got = onnx_embed(os.path.join(st_dir, rel), st, c["texts"], c["prompt"]).astype(np.float64)
                worst_abs = max(worst_abs, float(np.abs(ref - got).max()))
                cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
                worst_cos = min(worst_cos, float(cos.min()))
            out[dtype] = {"max_abs_diff": worst_abs, "min_cosine": worst_cos}
        except Exception as e:  # noqa: BLE001
            errors.append(f"{tag}: parity {dtype}: {e!r}")
    return out


def spread(refs: dict) -> dict:
    """How distinct the fixture's embeddings are (a degenerate random model would make parity tests vacuous)."""
    import numpy as np

    by = {c["case"]: np.asarray(c["vectors"], dtype=np.float64) for c in refs["cases"]}
    plain = by.get("no_prompt")
    out = {}
    if plain is not None:
        n = plain / np.linalg.norm(plain, axis=1, keepdims=True)
        sims = n @ n.T
        iu = np.triu_indices(len(n), 1)
        out["mean_pairwise_cosine"] = float(sims[iu].mean())
        out["max_pairwise_cosine"] = float(sims[iu].max())
        q = by.get("encode_query")
        if q is not None:
            qn = q / np.linalg.norm(q, axis=1, keepdims=True)
            out["query_prompt_effect_min_abs"] = float(np.abs(qn - n[: len(QUERIES)]).max(1).min())
    return out


def choose_init(tokenizer_dir: str, work: str, errors: list) -> float:
    """Largest-mixing init that still quantizes well: CLS pooling of a 0.02-init BERT barely depends on the text."""
    from trainer.artifact import export_onnx, quantize_int8

    best = None
    for r in (0.15, 0.25, 0.1, 0.06):
        try:
            st, hf = build_st(tokenizer_dir, work, f"probe{r}", seed=7, init_range=r, pooling="cls", normalize=True,
                              max_seq_length=64, prompts={"query": BGE_PROMPT}, default_prompt_name=None)
            d = os.path.join(work, f".probe{r}")
            shutil.rmtree(d, ignore_errors=True)
            st.save(d, create_model_card=False)
            refs = references(st, errors, f"probe{r}")
            export_onnx(d, os.path.join(d, "onnx", "model.onnx"))
            quantize_int8(os.path.join(d, "onnx", "model.onnx"), os.path.join(d, "onnx", "model_quantized.onnx"))
            p = parity(d, st, refs, {"fp32": "onnx/model.onnx", "q8": "onnx/model_quantized.onnx"}, errors, f"probe{r}")
            s = spread(refs)
            log(f"init {r}: spread {s} parity {p}")
            shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(hf, ignore_errors=True)
            ok = (s.get("mean_pairwise_cosine", 1) < 0.9 and s.get("query_prompt_effect_min_abs", 0) > 1e-2
                  and p.get("q8", {}).get("min_cosine", 0) >= 0.9995 and p.get("fp32", {}).get("max_abs_diff", 1) < 1e-5)
            if ok:
                return r
            if best is None:
                best = r
        except Exception as e:  # noqa: BLE001
            errors.append(f"choose_init {r}: {e!r}")
    return best if best is not None else 0.1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="working directory; everything is written to OUT/st_fixtures/")
    ap.add_argument("--tokenizer", default=os.path.join(REPO, "test/fixtures/models/tiny"))
    ap.add_argument("--tar", default=os.path.join(os.environ.get("OUT", "."), "st_fixtures.tar.gz"))
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()

    t0 = time.time()
    root = os.path.join(os.path.abspath(a.out), "st_fixtures")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    work = os.path.join(os.path.abspath(a.out), ".work")
    os.makedirs(work, exist_ok=True)
    errors: list[str] = []
    manifest: dict = {"generator": "scripts/gpu/st_fixtures.py", "queries": QUERIES, "passages": PASSAGES,
                      "hub_org": HUB_ORG, "models": {}, "errors": errors}
    refs_all: dict = {}

    import numpy as np  # noqa: F401
    import onnx
    import onnxruntime
    import sentence_transformers
    import torch
    import transformers

    manifest["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                            "sentence_transformers": sentence_transformers.__version__,
                            "transformers": transformers.__version__, "onnx": onnx.__version__,
                            "onnxruntime": onnxruntime.__version__}
    log(f"versions {manifest['versions']}")

    init = choose_init(a.tokenizer, work, errors)
    manifest["initializer_range"] = init
    log(f"initializer_range {init}")

    specs = [
        dict(name="st-bge-tiny", seed=a.seed, pooling="cls", normalize=True, max_seq_length=64,
             prompts={"query": BGE_PROMPT}, default_prompt_name=None, q8=True, fp16=True, weights=True),
        dict(name="st-e5-tiny", seed=a.seed + 1, pooling="mean", normalize=False, max_seq_length=128,
             prompts={"query": "query: ", "document": "passage: "}, default_prompt_name=None, q8=True, fp16=False, weights=True),
        dict(name="st-max-noprompt", seed=a.seed + 2, pooling="max", normalize=False, max_seq_length=32,
             prompts={"query": "Instruct: find the passage that answers the question\nQuery: ", "document": ""},
             default_prompt_name="query", include_prompt=False, q8=False, fp16=False, weights=False),
    ]
    bge_st = None
    for sp in specs:
        name = sp["name"]
        required = name in ("st-bge-tiny", "st-e5-tiny")
        try:
            st, hf = build_st(a.tokenizer, work, name, seed=sp["seed"], init_range=init, pooling=sp["pooling"],
                              normalize=sp["normalize"], max_seq_length=sp["max_seq_length"], prompts=sp["prompts"],
                              default_prompt_name=sp["default_prompt_name"], include_prompt=sp.get("include_prompt", True))
            d = os.path.join(root, name)
            st.save(d, create_model_card=False)
            st = load_st(d)  # references come from the saved model, as a user would load it
            refs = references(st, errors, name)
            files = export(d, errors, name, q8=sp["q8"], fp16=sp["fp16"])
            if not sp["weights"]:
                for w in ("model.safetensors", "pytorch_model.bin"):
                    if os.path.exists(os.path.join(d, w)):
                        os.remove(os.path.join(d, w))
            par = parity(d, st, refs, files, errors, name)
            refs_all[name] = refs
            manifest["models"][name] = {"dir": name, "onnx": files, "parity": par, "spread": spread(refs),
                                        "config": refs["config"], "has_pytorch_weights": sp["weights"],
                                        "files": files_under(d)}
            log(f"{name}: parity {par} spread {manifest['models'][name]['spread']}")
            if name == "st-bge-tiny":
                bge_st = st
            shutil.rmtree(hf, ignore_errors=True)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{name}: {e!r}\n{traceback.format_exc()}")
            log(f"{name} FAILED: {e!r}")
            if required:
                write_out(root, manifest, refs_all)
                make_tar(root, a.tar)
                return 1

    # hub cache copy of st-bge-tiny (EMBED_MODEL=fixture-org/st-bge-tiny with the cache dir pointed at hub/)
    try:
        info = hub_cache(os.path.join(root, "st-bge-tiny"), os.path.join(root, "hub"), f"{HUB_ORG}/st-bge-tiny")
        manifest["hub"] = info
        refs_all["st-bge-tiny"]["hub_id"] = info["repo_id"]
    except Exception as e:  # noqa: BLE001
        errors.append(f"hub cache: {e!r}\n{traceback.format_exc()}")

    # a "trainer-made" candidate from st-bge-tiny: weights perturbed (stand-in for fine-tuning), written by the
    # trainer's own write_artifact. Its parity check assumes mean pooling, so it is disabled here (tol inf) and
    # recorded instead: the serving side must read pooling and prompts from pytorch/.
    try:
        if bge_st is None:
            raise RuntimeError("st-bge-tiny missing")
        from trainer.artifact import write_artifact

        ft = load_st(os.path.join(root, "st-bge-tiny"))
        g = torch.Generator().manual_seed(a.seed + 9)
        with torch.no_grad():
            for p in ft.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02 * init / 0.1)
        round_fp16_(ft)
        d = os.path.join(root, "st-bge-tiny-ft")
        card = {"version": "st-bge-tiny-ft", "parent_version": f"{HUB_ORG}__st-bge-tiny", "pooling": "cls", "normalize": True}
        info = write_artifact(ft, d, card, quantize=True, weights_fp16=True, parity_tol=float("inf"))
        ft2 = load_st(os.path.join(d, "pytorch"))
        refs = references(ft2, errors, "st-bge-tiny-ft")
        files = {"fp32": "onnx/model.onnx", "q8": "onnx/model_quantized.onnx"}
        par = parity(d, ft2, refs, files, errors, "st-bge-tiny-ft")
        refs_all["st-bge-tiny-ft"] = refs
        manifest["models"]["st-bge-tiny-ft"] = {"dir": "st-bge-tiny-ft", "onnx": files, "parity": par,
                                                 "trainer_export_info": info, "config": refs["config"],
                                                 "files": files_under(d),
                                                 "note": "trainer's own parity (mean-pooled OnnxEncoder) reported "
                                                         "onnx_parity_max_abs_diff above; CLS is what ST serves"}
        log(f"st-bge-tiny-ft: trainer parity (mean-pooled) {info.get('onnx_parity_max_abs_diff')} cls parity {par}")
    except Exception as e:  # noqa: BLE001
        errors.append(f"st-bge-tiny-ft: {e!r}\n{traceback.format_exc()}")

    # can the trainer load each ST dir as a plain base/ (trainer/README.md)? (no training: `datasets` may be absent)
    checks = {}
    for name in ("st-bge-tiny", "st-e5-tiny"):
        try:
            from trainer.bundle import resolve_base
            from trainer.train import load_model

            bdir = os.path.join(work, f"bundle-{name}")
            shutil.rmtree(bdir, ignore_errors=True)
            shutil.copytree(os.path.join(root, name), os.path.join(bdir, "base"), symlinks=False)
            base = resolve_base(bdir, {})
            m = load_model(base, "cpu", 64)
            checks[name] = {"resolve_base": os.path.relpath(base, bdir), "config": st_config(m)}
        except Exception as e:  # noqa: BLE001
            errors.append(f"trainer load {name}: {e!r}")
    manifest["trainer_load_checks"] = checks

    manifest["seconds"] = round(time.time() - t0, 1)
    write_out(root, manifest, refs_all)
    shutil.rmtree(work, ignore_errors=True)
    size = make_tar(root, a.tar)
    # over the return limit: drop optional files (fp16 ONNX, the serving-only fixture) and tar again
    for drop in (os.path.join(root, "st-bge-tiny", "onnx", "model_fp16.onnx"), os.path.join(root, "st-max-noprompt")):
        if size <= MAX_TAR_BYTES:
            break
        log(f"tarball {size} bytes > {MAX_TAR_BYTES}: dropping {drop}")
        errors.append(f"dropped {os.path.relpath(drop, root)} (tarball size)")
        shutil.rmtree(drop, ignore_errors=True) if os.path.isdir(drop) else (os.path.exists(drop) and os.remove(drop))
        write_out(root, manifest, refs_all)
        size = make_tar(root, a.tar)
    log(f"wrote {a.tar} ({size} bytes) in {time.time() - t0:.1f}s; errors: {len(errors)}")
    for e in errors:
        log(f"error: {e.splitlines()[0]}")
    print(json.dumps({"event": "done", "tar": a.tar, "bytes": size, "errors": len(errors),
                      "parity": {k: v.get("parity") for k, v in manifest["models"].items()}}), flush=True)
    return 0


def write_out(root: str, manifest: dict, refs: dict) -> None:
    for name, r in refs.items():
        r.setdefault("dir", name)
    with open(os.path.join(root, "references.json"), "w") as f:
        json.dump({"queries": QUERIES, "passages": PASSAGES, "models": refs}, f)
    sizes = {}
    for f in files_under(root):
        p = os.path.join(root, f)
        if not os.path.islink(p):
            sizes[f] = os.path.getsize(p)
    manifest["sizes"] = sizes
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
