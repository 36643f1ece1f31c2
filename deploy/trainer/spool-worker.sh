#!/bin/sh
# The compose `trainer` service: takes training requests that deploy/trainer/submit.sh drops into the
# shared spool directory, one at a time (one GPU), and records each exit code next to its log.
set -u
spool=${TRAINER_SPOOL:-/data/trainer-spool}
mkdir -p "$spool"
# Heartbeat in the background so a long training run still reads as "alive" to submit.sh.
( while :; do touch "$spool/.heartbeat"; sleep 10; done ) &
echo "trainer spool worker watching $spool" >&2
while :; do
  for req in "$spool"/*.req; do
    [ -e "$req" ] || break
    id=$(basename "$req" .req)
    mv "$req" "$spool/$id.run" 2>/dev/null || continue   # claimed by someone else
    bundle=$(sed -n 1p "$spool/$id.run")
    out=$(sed -n 2p "$spool/$id.run")
    echo "training $id: $bundle -> $out" >&2
    python -m trainer train "$bundle" "$out" >> "$spool/$id.log" 2>&1
    echo $? > "$spool/$id.rc.tmp" && mv "$spool/$id.rc.tmp" "$spool/$id.rc"
  done
  sleep 2
done
