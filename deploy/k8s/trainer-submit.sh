#!/bin/sh
# TRAINER_COMMAND for Kubernetes:  sh /app/deploy/bin/trainer-submit.sh {bundle} {out}
# Creates one GPU Job from the template (TRAINER_JOB_TEMPLATE, mounted from the retrieval-trainer-job
# ConfigMap), streams its log to stdout (the trainer's JSON progress lines become job progress in the
# server) and exits 0 only if the Job succeeded. Needs kubectl in the image (KUBECTL_VERSION build arg)
# and the Role in rbac.yaml. The server's TRAINER_TIMEOUT_SECONDS bounds the whole run; the Job's
# activeDeadlineSeconds bounds the pod even if this script is killed.
set -eu
bundle=$1
out=$2
tpl=${TRAINER_JOB_TEMPLATE:-/etc/retrieval/trainer-job.yaml}
image=${TRAINER_IMAGE:?TRAINER_IMAGE must name the trainer image}
pvc=${DATA_PVC:-retrieval-data}
ns=${POD_NAMESPACE:-default}
name="retrain-$(date +%s)-$$"
k() { kubectl -n "$ns" "$@"; }

# JSON strings are valid YAML scalars, so quoted paths survive any character a directory may contain.
json() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
sed_escape() { printf '%s' "$1" | sed 's/[&|\\]/\\&/g'; }
[ -r "$tpl" ] || { echo "trainer Job template $tpl is not readable" >&2; exit 2; }
sed -e "s|__NAME__|$name|g" -e "s|__IMAGE__|$(sed_escape "$image")|g" -e "s|__PVC__|$(sed_escape "$pvc")|g" \
    -e "s|__BUNDLE__|$(sed_escape "$(json "$bundle")")|g" -e "s|__OUT__|$(sed_escape "$(json "$out")")|g" "$tpl" \
  | k create -f - >&2

cleanup() { k delete job "$name" --wait=false >/dev/null 2>&1 || true; }
trap 'cleanup; exit 143' TERM INT

status() { k get job "$name" -o jsonpath='{.status.succeeded}/{.status.failed}' 2>/dev/null || echo "/"; }

# Follow the log once the container has started; until then `kubectl logs` fails and we poll.
while :; do
  if k logs -f "job/$name" 2>/dev/null; then break; fi
  case "$(status)" in
    1/* | */[1-9]*)
      # Finished before the log could be followed: print what it left (the failure's last lines).
      k logs "job/$name" --tail=200 2>/dev/null || true
      break ;;
  esac
  sleep 5
done
# The Job's own status is the verdict (a log stream can end early on a kubelet restart).
for _ in $(seq 1 60); do
  case "$(status)" in
    1/*) exit 0 ;;
    */[1-9]*)
      echo "trainer Job $name failed: $(k get job "$name" -o jsonpath='{.status.conditions[?(@.type=="Failed")].message}' 2>/dev/null)" >&2
      exit 1 ;;
  esac
  sleep 5
done
echo "trainer Job $name neither succeeded nor failed after its log ended; see kubectl -n $ns describe job $name" >&2
exit 1
