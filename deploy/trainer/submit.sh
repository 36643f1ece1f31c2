#!/bin/sh
# TRAINER_COMMAND for docker compose:  sh /app/deploy/bin/submit.sh {bundle} {out}
# The server and the `trainer` service (profile gpu) share the /data volume, so a bundle path is valid in
# both. This hands the job to the trainer's spool worker, streams its output back (JSON progress lines
# reach the server's job view) and exits with the trainer's exit code. The server's own
# TRAINER_TIMEOUT_SECONDS bounds the wait.
set -eu
bundle=$1
out=$2
spool=${TRAINER_SPOOL:-/data/trainer-spool}
mkdir -p "$spool"
hb="$spool/.heartbeat"
now=$(date +%s)
if [ ! -f "$hb" ] || [ $((now - $(stat -c %Y "$hb"))) -gt 60 ]; then
  echo "no trainer worker is alive (no heartbeat in $hb for 60 s): start it with 'docker compose -f deploy/compose.yaml --profile gpu up -d trainer'" >&2
  exit 3
fi
id="job-$now-$$"
printf '%s\n%s\n' "$bundle" "$out" > "$spool/$id.tmp"
mv "$spool/$id.tmp" "$spool/$id.req"   # rename is atomic: the worker never sees half a request
: > "$spool/$id.log"
tail -n +1 -f "$spool/$id.log" &
tailer=$!
trap 'kill $tailer 2>/dev/null || true' EXIT
while [ ! -f "$spool/$id.rc" ]; do
  sleep 2
  if [ -f "$spool/$id.req" ] && [ $(( $(date +%s) - $(stat -c %Y "$hb") )) -gt 60 ]; then
    rm -f "$spool/$id.req"
    echo "the trainer worker stopped before taking the job" >&2
    exit 3
  fi
done
sleep 1   # let tail print the last lines
rc=$(cat "$spool/$id.rc")
rm -f "$spool/$id.rc" "$spool/$id.run" "$spool/$id.log"
exit "$rc"
