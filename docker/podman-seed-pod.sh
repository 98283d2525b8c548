#!/usr/bin/env bash
# Plays the seed Pod for real with podman (no Docker engine or cluster needed): the app-only
# Pod of docker/kubernetes/app-pod.yaml with sidelog added by `sidelog inject --classic`
# (and the ConfigMap it generates), plus a third container running `sidelog intake` as the
# Datadog endpoint (containers of a Pod share 127.0.0.1). Checks that every line the app
# container wrote arrived, tagged from the Pod's labels, then rotates the API key the way the
# kubelet does and checks again.
#
# What differs from what `sidelog inject` gives users, and why, is in docker/podman-pod.py
# (volumes podman 4.3 cannot mount, ports and probes, Downward API stand-ins, the intake
# container); sidelog gets SIDELOG_DATADOG__ENDPOINT pointing at the intake. Native sidecars
# are not played: podman 4.3 has no init-container restartPolicy (CI validates the native form
# against the Kubernetes schemas instead). Resource limits are not enforced with the cgroupfs
# manager here.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/sidelog-seed-pod.XXXXXX)"
manifest="$work/pod.yaml"

# shellcheck source=docker/podman-lib.sh
. "$root/docker/podman-lib.sh"
trap 'status=$?; teardown "$manifest" sidelog $status; exit $status' EXIT
podman_setup
build_images

echo "== the Pod"
secret="$work/secret"
intake_dir="$work/intake"
mkdir -p "$intake_dir/out"
secret_volume "$secret" api-key key-one
echo "key-one" > "$intake_dir/api-key"
chmod -R a+rX "$intake_dir"
chmod a+rwx "$intake_dir/out"

# The Pod's labels as the kubelet writes them for a downwardAPI volume.
podinfo="$work/podinfo"
mkdir -p "$podinfo"
printf 'app.kubernetes.io/name="user-msvc"\ntags.datadoghq.com/env="seed"\ntags.datadoghq.com/service="user-msvc"\n' > "$podinfo/labels"
: > "$podinfo/annotations"
chmod -R a+rX "$podinfo"

echo "== sidelog inject --classic -f docker/kubernetes/app-pod.yaml"
"$root/target/$target/quick/sidelog" inject --classic --logs /var/log \
  -f "$root/docker/kubernetes/app-pod.yaml" > "$work/injected.yaml"

python3 "$root/docker/podman-pod.py" "$work/injected.yaml" "$manifest" "$work/configmap.yaml" \
  "$intake_dir" --secret "$secret" --downward "$podinfo" \
  --env sidelog SIDELOG_DATADOG__ENDPOINT http://127.0.0.1:8080

pm kube play --network none --configmap "$work/configmap.yaml" "$manifest" >/dev/null
pm ps --pod --format '{{.Names}} {{.Status}}'

events="$intake_dir/out/events.jsonl"
logs_dir="$(volume_dir user-msvc-user-msvc /var/log)"
app_log="$logs_dir/user-msvc.log"

# Waits until every line the app has written so far has arrived; prints what it found.
check_all_arrived() {
  python3 - "$app_log" "$events" "$1" <<'PY'
import json, sys, time
app_log, events, what = sys.argv[1:4]
def seqs_written():
    with open(app_log, "rb") as f:
        return [int(l[5:15]) for l in f.read().split(b"\n") if len(l) > 15]
written = seqs_written()
deadline = time.time() + 60
while True:
    arrived, dups, hosts, tags = {}, 0, set(), set()
    try:
        for line in open(events):
            e = json.loads(line)
            seq = int(e["message"][5:15])
            dups += seq in arrived
            arrived[seq] = 1
            hosts.add(e["hostname"]); tags.add(e["ddtags"])
    except FileNotFoundError:
        pass
    missing = [s for s in written if s not in arrived]
    if not missing:
        break
    if time.time() > deadline:
        sys.exit(f"{what}: {len(missing)} of {len(written)} lines missing (first {missing[:5]})")
    time.sleep(0.5)
print(f"{what}: all {len(written)} lines written so far arrived ({len(arrived)} events, {dups} duplicates); hostname {sorted(hosts)}; tags {sorted(tags)[0]}")
if dups:
    sys.exit(f"{what}: {dups} duplicates")
if not all("env:seed" in t.split(",") for t in tags):
    sys.exit(f"{what}: events without the env:seed tag of the Pod's labels: {sorted(tags)}")
PY
}

for _ in $(seq 1 60); do [ -s "$events" ] && break; sleep 0.5; done
sleep 3
check_all_arrived "before the key rotation"

# What the sidecar costs in memory, as the kubelet counts it: at the app's 50 lines/s, then
# with a second writer at 1,000 lines/s for 20 s (numbered far from the app's lines, which the
# checks count).
report_memory user-msvc-sidelog "app at 50 lines/s"
pm exec user-msvc-user-msvc /usr/local/bin/sidelog generate --out /var/log/burst.log \
  --rate 1000 --seconds 25 --first 1000000000 >/dev/null 2>&1 &
burst=$!
sleep 20
report_memory user-msvc-sidelog "with a second writer at 1,000 lines/s"
wait "$burst" || true

rotate_and_check "$secret" api-key sidelog check_all_arrived "$events" "$intake_dir"
echo "seed Pod: ok ($accepted events; the new key in use without a restart)"
