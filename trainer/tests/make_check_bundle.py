"""A small real-text training bundle made from this repository's own Markdown (no data set needed), for
scripts/gpu/trainer-check.sh and the sweep tests.

  python3 -m trainer.tests.make_check_bundle --out DIR --base models/base [--cold] [--job JSON]

corpus.jsonl: the prose paragraphs of the committed *.md files (code, tables and headings left out) and the prose
comment blocks of the committed *.ts files, one passage each, `group` = the file. The section heading above a paragraph is its query: a hash of the heading puts it in
eval.jsonl (about a quarter of the headings; relevant = every paragraph of that section) or in pairs.jsonl (heading ->
each paragraph of its section, with `positive_id`). --cold writes an empty pairs.jsonl (cold start: train on the
corpus alone).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def md_sections(path: str) -> list[tuple[str, str]]:
    """(heading, paragraph) for every prose paragraph of a Markdown file."""
    out, heading, fence, para = [], "", False, []

    def flush():
        text = " ".join(" ".join(para).split())
        para.clear()
        # prose only: two sentences and a dozen words at least
        if heading and len(text.split()) >= 12 and len(re.findall(r"[.!?](\s|$)", text)) >= 2:
            out.append((heading, text))

    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.rstrip("\n")
            if s.lstrip().startswith("```"):
                fence = not fence
                flush()
                continue
            if fence:
                continue
            if s.startswith("#"):
                flush()
                heading = s.lstrip("#").strip().strip("`*_ ")
            elif not s.strip() or s.lstrip().startswith(("|", "<", "    ")):
                flush()
            else:
                para.append(s.strip().lstrip("-* ").strip())
    flush()
    return out


def ts_comments(path: str) -> list[str]:
    """The prose comment blocks (// lines or /* */ blocks of two sentences and a dozen words) of a source file."""
    out, block, inside = [], [], False

    def flush():
        text = " ".join(" ".join(block).split())
        block.clear()
        if len(text.split()) >= 12 and len(re.findall(r"[.!?](\s|$)", text)) >= 2:
            out.append(text)

    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            if inside:
                inside = "*/" not in s
                block.append(s.split("*/")[0].lstrip("* ").strip())
                if not inside:
                    flush()
            elif s.startswith("/*"):
                inside = "*/" not in s
                block.append(s[2:].split("*/")[0].lstrip("* ").strip())
                if not inside:
                    flush()
            elif s.startswith("//"):
                block.append(s[2:].strip())
            else:
                flush()
    flush()
    return out


SKIP_DIRS = {".git", "node_modules", "dist", "coverage", "data", ".carry", ".whl", ".gl", ".tmp", "results"}


def repo_files(repo: str, ext: str) -> list[str]:
    """Paths (relative, sorted) of the repository's files ending in `ext`, build outputs and data left out. A walk,
    not `git ls-files`: the device machine gets a copy of the work tree, maybe without .git."""
    out = []
    for root, dirs, files in os.walk(repo):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        out += [os.path.relpath(os.path.join(root, f), repo) for f in files if f.endswith(ext)]
    return sorted(out)


def build(out: str, base: str, cold: bool = False, job: dict | None = None, repo: str = REPO) -> dict:
    corpus, sections = [], {}
    for rel in repo_files(repo, ".md"):
        for k, (heading, text) in enumerate(md_sections(os.path.join(repo, rel))):
            cid = f"{rel}#{k}"
            corpus.append({"id": cid, "text": text, "group": rel})
            sections.setdefault(heading, []).append(cid)
    # source comments: more passages to search and to make corpus pairs from; no queries point at them
    for rel in repo_files(repo, ".ts"):
        for k, text in enumerate(ts_comments(os.path.join(repo, rel))):
            corpus.append({"id": f"{rel}#{k}", "text": text, "group": rel})
    seen = set()
    corpus = [c for c in corpus if not (c["text"] in seen or seen.add(c["text"]))]
    texts = {c["id"]: c["text"] for c in corpus}
    sections = {h: [i for i in ids if i in texts] for h, ids in sections.items()}
    pairs, queries = [], []
    for heading, ids in sorted(sections.items()):
        if len(heading.split()) < 2:
            continue  # one-word headings ("Tests", "Output") are not questions anyone asks
        if int(hashlib.sha256(heading.encode()).hexdigest(), 16) % 4 == 0:
            queries.append({"id": f"q{len(queries)}", "query": heading, "relevant": ids})
        elif not cold:
            pairs += [{"anchor": heading, "positive": texts[i], "positive_id": i} for i in ids]
    os.makedirs(out, exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("pairs.jsonl", pairs), ("eval.jsonl", queries)):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    j = {"loss": "mnrl", "batch_size": 64, "epochs": 1, "lr": 3e-4, "seed": 42, "max_seq_length": 256, "gpu": "auto"}
    j.update(job or {})
    with open(os.path.join(out, "job.json"), "w") as f:
        json.dump(j, f)
    shutil.copytree(base, os.path.join(out, "base"), dirs_exist_ok=True)
    return {"corpus": len(corpus), "pairs": len(pairs), "eval": len(queries),
            "pair_anchors": len({p["anchor"] for p in pairs})}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", default=os.path.join(REPO, "models", "base"))
    ap.add_argument("--cold", action="store_true", help="empty pairs.jsonl (cold start)")
    ap.add_argument("--job", default="{}", help="job.json keys (JSON) over the defaults")
    a = ap.parse_args()
    print(json.dumps({"bundle": a.out, **build(a.out, a.base, a.cold, json.loads(a.job))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
