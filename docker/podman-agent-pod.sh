#!/usr/bin/env bash
# Plays the seed Pod moved from the Datadog Agent to sidelog, for real with podman:
# docker/kubernetes/agent/sidelog-pod.yaml, the Agent's Pod with only its image changed. The
# `datadog-agent` container (now sidelog) finds the Agent's conf.d in its ConfigMap, its key in
# the Secret volume through ENC[file@/etc/datadog-agent/secret/api_key], and the rest in its
# DD_* variables. Checks that every line the app wrote arrived as the Agent's configuration
# asks (service, source, tags, debug lines dropped, user ids and client addresses masked),
# then rotates the key the way the kubelet does and checks again.
#
# What differs from the manifest, and why, is in docker/podman-pod.py; besides, the Agent's
# logs_dd_url points at the intake container (with logs_no_ssl: it is on 127.0.0.1), as an
# Agent user does to send through a local proxy.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/sidelog-agent-pod.XXXXXX)"
manifest="$work/pod.yaml"

# shellcheck source=docker/podman-lib.sh
. "$root/docker/podman-lib.sh"
trap 'status=$?; teardown "$manifest" datadog-agent $status; exit $status' EXIT
podman_setup
build_images

echo "== the Agent's Pod with sidelog's image (docker/kubernetes/agent/sidelog-pod.yaml)"
secret="$work/secret"
intake_dir="$work/intake"
mkdir -p "$intake_dir/out"
secret_volume "$secret" api_key key-one
echo "key-one" > "$intake_dir/api-key"
chmod -R a+rX "$intake_dir"
chmod a+rwx "$intake_dir/out"
python3 "$root/docker/podman-pod.py" "$root/docker/kubernetes/agent/sidelog-pod.yaml" \
  "$manifest" "$work/configmap.yaml" "$intake_dir" --secret "$secret" \
  --env datadog-agent DD_LOGS_CONFIG_LOGS_DD_URL 127.0.0.1:8080 \
  --env datadog-agent DD_LOGS_CONFIG_LOGS_NO_SSL true
pm kube play --network none --configmap "$work/configmap.yaml" "$manifest" >/dev/null
pm ps --pod --format '{{.Names}} {{.Status}}'

events="$intake_dir/out/events.jsonl"
app_log="$(volume_dir user-msvc-user-msvc /var/log)/user-msvc.log"

# Waits until every line the app has written so far arrived as the Agent's configuration
# asks: the global rule (client addresses masked) first, then the source's (debug lines
# dropped, user ids masked), trimmed; with the service, source, host name and tags it sets.
check_as_the_agent_asks() {
  python3 - "$app_log" "$events" "$1" <<'PY'
import json, re, sys, time
app_log, events, what = sys.argv[1:4]
ip = re.compile(r"(10\.)\d+\.\d+\.\d+")
user = re.compile(r'("user_id":)\d+')
def expected(line):
    line = ip.sub(r"\g<1>x.x.x", line)
    if '"level":"debug"' in line:
        return None
    return user.sub(r'\g<1>"[masked]"', line).strip()
written = [l.decode() for l in open(app_log, "rb").read().split(b"\n") if len(l) > 15]
want = {}
for l in written:
    e = expected(l)
    if e is not None:
        want[int(l[5:15])] = e
deadline = time.time() + 60
while True:
    got, dups, bad = {}, 0, []
    try:
        for line in open(events):
            e = json.loads(line)
            seq = int(e["message"][5:15])
            dups += seq in got
            got[seq] = e
    except FileNotFoundError:
        pass
    missing = [s for s in want if s not in got]
    if not missing:
        break
    if time.time() > deadline:
        sys.exit(f"{what}: {len(missing)} of {len(want)} lines missing (first {missing[:5]})")
    time.sleep(0.5)
tags_wanted = {"cluster:seed", "region:eu-west-1", "env:seed", "version:1.0", "team:users", "sourcecategory:http", "filename:user-msvc.log"}
last = max(int(l[5:15]) for l in written)
for seq, e in got.items():
    if seq > last:
        continue  # written after the file was read here
    if seq not in want:
        bad.append(f"{seq}: a debug line arrived")
        continue
    if e["message"] != want[seq]:
        bad.append(f"{seq}: {e['message']!r} instead of {want[seq]!r}")
    if (e["service"], e["ddsource"], e["hostname"]) != ("user-msvc", "go", "user-msvc"):
        bad.append(f"{seq}: service {e['service']}, source {e['ddsource']}, host {e['hostname']}")
    lacking = tags_wanted - set(e["ddtags"].split(","))
    if lacking:
        bad.append(f"{seq}: tags {e['ddtags']} lack {sorted(lacking)}")
if dups or bad:
    sys.exit(f"{what}: {dups} duplicates; " + "; ".join(bad[:5]))
print(f"{what}: {len(want)} of {len(written)} lines written so far arrived as the Agent's configuration asks ({len(written) - len(want)} debug lines dropped), none twice")
PY
}

for _ in $(seq 1 60); do [ -s "$events" ] && break; sleep 0.5; done
sleep 3
check_as_the_agent_asks "before the key rotation"
log="$(pm logs user-msvc-datadog-agent 2>&1)"
for named in DD_APM_ENABLED DD_PROCESS_AGENT_ENABLED DD_KUBERNETES_KUBELET_HOST; do
  grep -q "$named" <<<"$log" || { echo "sidelog did not name $named in a warning"; exit 1; }
done

rotate_and_check "$secret" api_key datadog-agent check_as_the_agent_asks "$events" "$intake_dir"
echo "the Agent's Pod with sidelog's image: ok ($accepted events; the new key in use without a restart)"
