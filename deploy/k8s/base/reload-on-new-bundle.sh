#!/bin/sh
# The API pod's bundle-reload sidecar: when a model's LATEST file on the shared artifacts volume changes (the
# training job replaces LATEST last, once the bundle is complete and verified), POST /admin/reload to the API
# container of the same pod, over loopback.
#
# Why this way: it needs no Kubernetes API access (no RBAC, no service-account token), no restart (the API
# swaps the new bundles in while serving; a refused bundle leaves the old one serving), and it reaches every
# pod, each on its own (a reload through the Service would reach one pod only). It reaches one uvicorn worker:
# the Deployment runs one per pod. With RECSERVE_ADMIN_KEY set, it sends it (loopback alone opens the admin
# routes only while no admin key is set); the key goes through stdin, never on a command line.
#
# Settings (environment): RECSERVE_ARTIFACTS (/artifacts), RELOAD_URL (http://127.0.0.1:8000/admin/reload),
# POLL_S (15), RECSERVE_ADMIN_KEY (optional; else RECSERVE_API_KEY, when the API needs one).
set -u
trap 'exit 0' TERM INT   # as PID 1, sh would ignore SIGTERM and hold the pod's shutdown for its grace period
ARTIFACTS="${RECSERVE_ARTIFACTS:-/artifacts}"
URL="${RELOAD_URL:-http://127.0.0.1:8000/admin/reload}"
POLL_S="${POLL_S:-15}"
KEY="${RECSERVE_ADMIN_KEY:-${RECSERVE_API_KEY:-}}"

# Every model's LATEST, one "path version" line each: a changed version or a new model changes it.
latest() {
    for f in "$ARTIFACTS"/*/LATEST; do
        [ -f "$f" ] && printf '%s %s\n' "$f" "$(cat "$f" 2>/dev/null)"
    done
}

reload() {  # prints the HTTP status (000: the API did not answer) and the body on one line
    if [ -n "$KEY" ]; then
        printf 'Authorization: Bearer %s\n' "$KEY" |
            curl -sS -X POST -H @- --max-time 600 -w ' %{http_code}' "$URL" 2>&1
    else
        curl -sS -X POST --max-time 600 -w ' %{http_code}' "$URL" 2>&1
    fi
}

# Nothing confirmed yet: the first poll asks for a reload as well. That costs next to nothing when the API
# already serves these bundles (a reload skips the models whose LATEST it has loaded), and it catches a change
# made while this container was restarting. Until the API answers (it loads the bundles before it opens the
# port), every poll asks again.
seen="(nothing yet)"
echo "bundle-reload: watching $ARTIFACTS/*/LATEST every ${POLL_S}s"
while :; do
    sleep "$POLL_S" & wait $!   # in the background, so that SIGTERM ends the wait at once
    now="$(latest)"
    [ "$now" = "$seen" ] && continue
    answer="$(reload)"
    code="${answer##* }"
    echo "bundle-reload: POST $URL: $code ${answer% *}"
    case "$code" in
        200|409) seen="$now" ;;  # done, or a bundle refused (the old one keeps serving; the next change retries)
        *) ;;                    # not answered or not allowed: try again at the next poll
    esac
done
