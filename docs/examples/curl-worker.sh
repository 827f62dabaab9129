#!/usr/bin/env bash
# A taskd worker in shell: curl for HTTP, python3 (or jq, when installed) for JSON.
#
#   docs/examples/curl-worker.sh QUEUE COMMAND [ARG...]
#
# Leases one task at a time from QUEUE (long-polling up to 20 s), runs COMMAND with the task's
# payload as JSON on stdin (TASKD_TASK_ID, TASKD_ATTEMPT and TASKD_QUEUE in its environment),
# heartbeats the lease while COMMAND runs, then completes the task with COMMAND's stdout as the
# result (JSON if it parses, else a string) or fails it with the last lines of its stderr.
#
# Environment: TASKD_URL (default http://127.0.0.1:8080), TASKD_WORKER (default
# curl-worker-$HOSTNAME-$$), TASKD_MAX_TASKS (stop after this many tasks; default: never),
# TASKD_NO_JQ=1 (use python3 for JSON even when jq is installed).
# See docs/workers.md, "The HTTP lease protocol".
set -euo pipefail

if (($# < 2)); then
    echo "usage: $0 QUEUE COMMAND [ARG...]" >&2
    exit 2
fi
queue="$1"
shift
url="${TASKD_URL:-http://127.0.0.1:8080}"
worker="${TASKD_WORKER:-curl-worker-${HOSTNAME:-host}-$$}"
max_tasks="${TASKD_MAX_TASKS:-0}"

# lease_fields ANSWER PAYLOADFILE: print "ID LEASE ATTEMPT LEASE_SECONDS" of the first task of a
# lease answer (nothing when it holds no task) and write its payload, as JSON, to PAYLOADFILE.
# One process per lease (jq when installed, unless TASKD_NO_JQ=1; else python3): the lease is
# ticking.
lease_fields() {
    if [[ "${TASKD_NO_JQ:-0}" != 1 ]] && command -v jq >/dev/null 2>&1; then
        jq -c '.tasks[0].payload' <<<"$1" >"$2"
        jq -r 'select(.tasks | length > 0) | "\(.tasks[0].id) \(.tasks[0].lease) \(.tasks[0].attempt) \(.lease_seconds)"' <<<"$1"
    else
        python3 -c 'import json, sys
d = json.loads(sys.argv[1])
if d["tasks"]:
    t = d["tasks"][0]
    with open(sys.argv[2], "w") as f:
        json.dump(t["payload"], f)
    print(t["id"], t["lease"], t["attempt"], d["lease_seconds"])' "$1" "$2"
    fi
}

# post PATH BODY: POST a JSON body; prints the answer; fails on a non-2xx status.
post() {
    curl --silent --show-error --fail-with-body --max-time 60 \
        -H 'Content-Type: application/json' -X POST --data-binary "$2" "$url$1"
}

# The body of a complete call: {"lease": N, "result": <stdout as JSON, else as a string>}.
complete_body() { # LEASE OUTFILE
    python3 -c 'import json, sys
text = open(sys.argv[2], encoding="utf-8", errors="replace").read().strip()
try:
    result = json.loads(text) if text else None
except ValueError:
    result = text
print(json.dumps({"lease": int(sys.argv[1]), "result": result}))' "$1" "$2"
}

fail_body() { # LEASE ERRFILE EXIT
    python3 -c 'import json, sys
tail = open(sys.argv[2], encoding="utf-8", errors="replace").read().strip().splitlines()[-20:]
error = "\n".join(tail) or f"exit status {sys.argv[3]}"
print(json.dumps({"lease": int(sys.argv[1]), "error": error}))' "$1" "$2" "$3"
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
done_count=0

while ((max_tasks == 0 || done_count < max_tasks)); do
    answer="$(post "/api/v1/queues/$queue/lease" "{\"worker\": \"$worker\", \"max\": 1, \"wait\": 20}")"
    fields="$(lease_fields "$answer" "$work/payload")"
    if [[ -z "$fields" ]]; then
        continue # nothing queued within the wait: ask again
    fi
    read -r id lease attempt ttl <<<"$fields"

    # Run the command in the background and heartbeat every third of the lease meanwhile.
    TASKD_TASK_ID="$id" TASKD_ATTEMPT="$attempt" TASKD_QUEUE="$queue" \
        "$@" <"$work/payload" >"$work/out" 2>"$work/err" &
    pid=$!
    # ticks of 0.1 s between heartbeats: a third of the lease
    beat_ticks="$(awk -v ttl="$ttl" 'BEGIN { n = int(ttl * 10 / 3); print (n < 1 ? 1 : n) }')"
    ticks=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 0.1
        ticks=$((ticks + 1))
        if ((ticks >= beat_ticks)) && kill -0 "$pid" 2>/dev/null; then
            ticks=0
            if ! post "/api/v1/tasks/$id/heartbeat" "{\"lease\": $lease}" >/dev/null; then
                echo "lease of $id lost (canceled or timed out); stopping it" >&2
                kill "$pid" 2>/dev/null || true
            fi
        fi
    done
    status=0
    wait "$pid" || status=$?

    if ((status == 0)); then
        post "/api/v1/tasks/$id/complete" "$(complete_body "$lease" "$work/out")" >/dev/null ||
            echo "complete of $id refused (its lease ended)" >&2
    else
        post "/api/v1/tasks/$id/fail" "$(fail_body "$lease" "$work/err" "$status")" >/dev/null ||
            echo "fail of $id refused (its lease ended)" >&2
    fi
    done_count=$((done_count + 1))
done
