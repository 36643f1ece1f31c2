#!/usr/bin/env bash
# The compose topology as plain processes, for machines without Docker: Postgres, an S3-compatible store
# (s3rver), two server replicas sharing both, and Prometheus scraping the replicas with deploy/'s rules.
# It then does what a user would: ingest with the CLI through replica A, search through replica B, read
# Prometheus, and replace replica B by a fresh one (empty DATA_DIR) that loads its index from S3.
#   bash deploy/local/topology.sh [--keep]      (needs: node, Debian's postgresql + prometheus, curl, jq)
# --keep leaves everything running and prints the URLs; otherwise it tears down at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
KEEP=${1:-}
W=$(mktemp -d /tmp/retrieval-topology.XXXXXX)
PIDS=()
BASE_URL=""; DB=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  [[ -n "$DB" ]] && psql -q "$BASE_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$W"
}
[[ "$KEEP" == --keep ]] || trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }
wait_http() { for _ in $(seq 1 600); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "timeout waiting for $1" >&2; return 1; }

say "Postgres"
BASE_URL=$(bash test/store/start-postgres.sh)
DB="topology_$$"
psql -q "$BASE_URL" -c "CREATE DATABASE $DB" >/dev/null
DATABASE_URL="${BASE_URL%/*}/$DB"
echo "$DATABASE_URL"

say "S3 (s3rver)"
node --openssl-legacy-provider test/objects/s3rver-main.mjs "$W/s3" topology > "$W/s3.port" &
PIDS+=($!)
for _ in $(seq 1 100); do [[ -s "$W/s3.port" ]] && break; sleep 0.1; done
S3_ENDPOINT="http://127.0.0.1:$(jq -r .port "$W/s3.port")"
echo "$S3_ENDPOINT bucket topology"

ADMIN_API_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export DATABASE_URL ADMIN_API_KEY S3_ENDPOINT OBJECT_STORE_URL=s3://topology/demo AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
export SNAPSHOT_EVERY_SECONDS=2 DRIFT_INTERVAL_SECONDS=0 LOG_LEVEL=warn HOST=127.0.0.1 METRICS_AUTH=off  # Prometheus scrapes without a key
start_replica() { # name port
  mkdir -p "$W/$1"
  DATA_DIR="$W/$1" PORT=$2 node --import tsx src/main.ts 2>"$W/$1.log" &
  PIDS+=($!)
  eval "PID_$1=$!"
  wait_http "http://127.0.0.1:$2/readyz"
  echo "replica $1 ready on :$2 ($(curl -s "http://127.0.0.1:$2/readyz"))"
}
say "Two replicas"
start_replica a 18801
start_replica b 18802

say "Prometheus (deploy/prometheus rules, scraping both replicas every 2 s)"
sed -e 's/scrape_interval: 15s/scrape_interval: 2s/' -e 's/evaluation_interval: 15s/evaluation_interval: 2s/' \
    -e 's/\["server:8080"\]/["127.0.0.1:18801", "127.0.0.1:18802"]/' deploy/prometheus/prometheus.yml > "$W/prometheus.yml"
cp deploy/prometheus/alerts.yml "$W/"
prometheus --config.file="$W/prometheus.yml" --storage.tsdb.path="$W/prom" --web.listen-address=127.0.0.1:19090 --log.level=warn 2>"$W/prom.log" &
PIDS+=($!)
wait_http http://127.0.0.1:19090/-/ready && echo "prometheus ready on :19090"

say "Ingest through replica A with the CLI"
DOCS="$W/docs.jsonl"
# 2,000 Gene Ontology passages shipped with the repo (test/fixtures/go), so a plain clone runs the same topology
head -n 2000 test/fixtures/go/corpus.jsonl > "$DOCS"
node --import tsx src/cli/index.ts ingest "$DOCS" --collection docs --create --quiet --url http://127.0.0.1:18801 --key "$ADMIN_API_KEY"
QUERY=$(head -n 1 "$DOCS" | jq -r .text)
WANT=$(head -n 1 "$DOCS" | jq -r .id)

say "Search through replica B"
# B follows A's writes through the database's change log (every second) and embeds them itself, or loads
# A's snapshot from S3 when one covers them: give it time on a small machine.
T0=$(date +%s%N)
for _ in $(seq 1 300); do
  RES=$(curl -s -X POST http://127.0.0.1:18802/search -H "authorization: Bearer $ADMIN_API_KEY" -H 'content-type: application/json' \
    -d "$(jq -n --arg q "$QUERY" '{collection:"docs", query:$q, k:3}')")
  GOT=$(jq -r '.results[0].id // empty' <<<"$RES")
  [[ "$GOT" == "$WANT" ]] && break; sleep 0.2
done
echo "top hit on B for document $WANT's own text: ${GOT:-none} (after $(( ($(date +%s%N) - T0) / 1000000 )) ms)"
[[ "$GOT" == "$WANT" ]] || { echo "last answer: $RES" >&2; tail -n 20 "$W/b.log" >&2; exit 1; }

say "Prometheus sees both replicas"
for _ in $(seq 1 50); do
  UP=$(curl -s 'http://127.0.0.1:19090/api/v1/query?query=sum(up%7Bjob%3D%22retrieval%22%7D)' | jq -r '.data.result[0].value[1] // 0')
  [[ "$UP" == 2 ]] && break; sleep 0.5
done
echo "up{job=retrieval} summed: $UP"; [[ "$UP" == 2 ]]
echo "rule groups loaded: $(curl -s http://127.0.0.1:19090/api/v1/rules | jq '.data.groups | length'), alerts: $(curl -s http://127.0.0.1:19090/api/v1/rules | jq '[.data.groups[].rules[] | select(.type=="alerting")] | length')"
sleep 3
echo "searches by route, as Prometheus has them: $(curl -s 'http://127.0.0.1:19090/api/v1/query?query=sum%20by%20(instance)%20(http_requests_total%7Broute%3D%22%2Fsearch%22%7D)' | jq -c '[.data.result[] | {(.metric.instance): .value[1]}] | add')"

say "Replace replica B by a fresh one (empty DATA_DIR): index from S3, not re-embedded"
sleep 3 # let A publish a snapshot that includes the ingest
kill "$PID_b"; wait "$PID_b" 2>/dev/null || true
rm -rf "$W/b"
T0=$(date +%s%N)
start_replica b 18802
echo "fresh replica ready in $(( ($(date +%s%N) - T0) / 1000000 )) ms"
# The snapshot may predate A's last writes (A publishes every SNAPSHOT_EVERY_SECONDS): B embeds that tail itself.
N=$(wc -l < "$DOCS")
for _ in $(seq 1 300); do
  curl -s http://127.0.0.1:18802/metrics | grep -qE "^index_size\{collection=\"docs\",[^}]*\} $N$" && break; sleep 0.2
done
curl -s http://127.0.0.1:18802/metrics | grep -E '^(object_store_operations_total|embed_batch_size_sum|index_size)' || true

if [[ "$KEEP" == --keep ]]; then
  say "Left running: A http://127.0.0.1:18801  B http://127.0.0.1:18802  Prometheus http://127.0.0.1:19090  (admin key $ADMIN_API_KEY; pids ${PIDS[*]}; dir $W)"
else
  say "OK — tearing down"
fi
