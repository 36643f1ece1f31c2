# Sourced by the device-call scripts that train several PubMedQA variants side by side on one GPU.
# Needs W (work dir), OUT, T0 and C (the job keys common to all variants) set by the caller.
# mk NAME 'JOB KEYS'      bundle W/b-NAME with C + the keys
# train_all NAME...       one trainer per variant, all at once; logs in W/logs/NAME.{log,err}
# soup BUNDLE NAME...     uniform weight average of the variants' models, scored on BUNDLE's eval set
# summarize NAME...       done lines, soups and environment into OUT/summary.txt
mk() { local n=$1 j=$2; python3 scripts/gpu/make_bundle.py --dataset pubmedqa --base models/base --group-field pmid \
  --out "$W/b-$n" --job "{$C,$j,\"version\":\"${PREFIX:-pm}-$n\"}" >> "$W/logs/bundles.txt"; }
train_all() {
  for n in "$@"; do
    (S=$(date +%s); timeout "${LIMIT:-420}" python3 -m trainer train "$W/b-$n" "$W/m-$n" 2>"$W/logs/$n.err" | grep -v '"progress"' > "$W/logs/$n.log"
     echo "{\"event\":\"process_wall_seconds\",\"name\":\"$n\",\"s\":$(( $(date +%s) - S ))}" >> "$W/logs/$n.log") &
  done
  wait
  echo "trained at $(( $(date +%s) - T0 ))s" >> "$W/logs/env.txt"
}
soup() { local b=$1 ms=(); shift; for n in "$@"; do [ -d "$W/m-$n" ] && ms+=("$W/m-$n/pytorch"); done
  timeout 60 python3 scripts/gpu/soup.py --no-singles --bundle "$W/b-$b" --models "${ms[@]}" 2>>"$W/logs/soup.err" | grep '"event"'; }
summarize() {
  echo "all done at $(( $(date +%s) - T0 ))s" >> "$W/logs/env.txt"
  for n in "$@"; do grep -h '"done"\|process_wall' "$W/logs/$n.log"; tail -1 "$W/logs/$n.err"; done > "$OUT/summary.txt"
  cat "$W/logs/soups.jsonl" >> "$OUT/summary.txt"; tail -3 "$W/logs/soup.err" >> "$OUT/summary.txt" 2>/dev/null
  cat "$W/logs/env.txt" >> "$OUT/summary.txt"
}
