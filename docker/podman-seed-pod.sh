#!/usr/bin/env bash
# Plays the seed Pod for real with podman (no Docker engine or cluster needed): the app-only
# Pod of docker/kubernetes/app-pod.yaml with sidelog added by `sidelog inject --classic`
# (and the ConfigMap it generates), plus a third container running `sidelog intake` as the
# Datadog endpoint (containers of a Pod share 127.0.0.1). Checks that every line the app
# container wrote arrived, tagged from the Pod's labels, then rotates the API key the way the
# kubelet does and checks again.
#
# What differs from what `sidelog inject` gives users, and why:
# - podman 4.3 crashes on `secret:` volumes, so the Secret volume becomes a hostPath directory
#   laid out like the kubelet's (api-key -> ..data/api-key, ..data -> ..<timestamp>), and the
#   Downward API volume of the Pod's labels a hostPath directory with the files the kubelet
#   would write;
# - the intake container and its hostPath directories are added, and sidelog gets
#   SIDELOG_DATADOG__ENDPOINT pointing at it;
# - the Downward API's namespace and node name become fixed values (podman 4.3 resolves only
#   metadata.name);
# - container ports and probes are dropped: with `--network none` podman refuses port
#   mappings, and it runs probes through a shell inside the container, which a scratch image
#   does not have (the probes' endpoints are tested by tests/admin.rs);
# - the image is built FROM scratch around a static binary built here (no base image can be
#   pulled): the Pod's binary as the image has it (the shipper alone, `dist` profile), and a
#   second image with the development tools for the intake container.
# Native sidecars are not played: podman 4.3 has no init-container restartPolicy (CI
# validates the native form against the Kubernetes schemas instead). Resource limits are not
# enforced with the cgroupfs manager here.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/sidelog-seed-pod.XXXXXX)"
manifest="$work/pod.yaml"

pm() { podman --runtime runc --cgroup-manager=cgroupfs "$@"; }

cleanup() {
  status=$?
  if [ -f "$manifest" ]; then
    if [ $status -ne 0 ]; then
      echo "--- sidelog's log"
      pm logs user-msvc-sidelog 2>&1 | tail -40 || true
      echo "--- intake's log"
      pm logs user-msvc-intake 2>&1 | tail -10 || true
    fi
    pm kube play --down "$manifest" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT

echo "== podman"
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq podman runc >/dev/null
fi
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml 2>/dev/null \
  || python3 -m pip install -q --break-system-packages pyyaml
printf '[containers]\ndefault_ulimits = []\n' > "$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
podman --version

echo "== images (FROM scratch, static binaries)"
target="$(rustc -vV | sed -n 's/^host: //p')"
# The Pod's binary, as docker/Dockerfile builds it; and one with the development tools, for
# the intake container only.
static="-C target-feature=+crt-static -C relocation-model=static"
(cd "$root" && RUSTFLAGS="$static" \
  cargo build --profile dist --no-default-features --locked --target "$target" --quiet)
(cd "$root" && RUSTFLAGS="$static" \
  cargo build --release --locked --target "$target" --quiet)
build_image() {
  mkdir "$work/$2"
  cp "$1" "$work/$2/sidelog"
  cp "$root/docker/Dockerfile.scratch" "$work/$2/"
  pm build --quiet -f "$work/$2/Dockerfile.scratch" -t "$2:0.1.0" "$work/$2" >/dev/null
}
build_image "$root/target/$target/dist/sidelog" sidelog
build_image "$root/target/$target/release/sidelog" sidelog-devtools
pm images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep sidelog
if pm run --rm --network none sidelog:0.1.0 intake --help >/dev/null 2>&1; then
  echo "the Pod's image must not carry the built-in intake"; exit 1
fi

echo "== the Pod"
secret="$work/secret"
intake_dir="$work/intake"
mkdir -p "$secret" "$intake_dir/out"
# The Secret volume as the kubelet lays it out.
gen=1
mkdir "$secret/..2026_11_26_10_00_0$gen"
echo "key-one" > "$secret/..2026_11_26_10_00_0$gen/api-key"
ln -s "..2026_11_26_10_00_0$gen" "$secret/..data"
ln -s "..data/api-key" "$secret/api-key"
echo "key-one" > "$intake_dir/api-key"
chmod -R a+rX "$secret" "$intake_dir"
chmod a+rwx "$intake_dir/out"

# The Pod's labels as the kubelet writes them for a downwardAPI volume.
podinfo="$work/podinfo"
mkdir -p "$podinfo"
printf 'app.kubernetes.io/name="user-msvc"\ntags.datadoghq.com/env="seed"\ntags.datadoghq.com/service="user-msvc"\n' > "$podinfo/labels"
: > "$podinfo/annotations"
chmod -R a+rX "$podinfo"

echo "== sidelog inject --classic -f docker/kubernetes/app-pod.yaml"
"$root/target/$target/release/sidelog" inject --classic --logs /var/log \
  -f "$root/docker/kubernetes/app-pod.yaml" > "$work/injected.yaml"

python3 - "$work/injected.yaml" "$manifest" "$secret" "$intake_dir" "$podinfo" "$work/configmap.yaml" <<'PY'
import sys, yaml
src, dst, secret, intake, podinfo, configmap = sys.argv[1:7]
docs = list(yaml.safe_load_all(open(src)))
yaml.safe_dump_all([d for d in docs if d["kind"] == "ConfigMap"], open(configmap, "w"), sort_keys=False)
pod = next(d for d in docs if d["kind"] == "Pod")
spec = pod["spec"]
for v in spec["volumes"]:
    if "secret" in v:
        del v["secret"]
        v["hostPath"] = {"path": secret, "type": "Directory"}
    if "downwardAPI" in v:
        del v["downwardAPI"]
        v["hostPath"] = {"path": podinfo, "type": "Directory"}
for c in spec["containers"]:
    # With --network none podman refuses port mappings, and it runs probes through a shell
    # inside the container, which a scratch image does not have.
    for key in ("ports", "livenessProbe", "readinessProbe"):
        c.pop(key, None)
sidelog = next(c for c in spec["containers"] if c["name"] == "sidelog")
# podman 4.3 resolves metadata.name from the Downward API but not the namespace or node.
stand_in = {"metadata.namespace": "default", "spec.nodeName": "podman"}
for e in sidelog["env"]:
    field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if field in stand_in:
        del e["valueFrom"]
        e["value"] = stand_in[field]
sidelog["env"].append({"name": "SIDELOG_DATADOG__ENDPOINT", "value": "http://127.0.0.1:8080"})
spec["containers"].append({
    "name": "intake",
    "image": "sidelog-devtools:0.1.0",
    "args": ["intake", "--listen", "127.0.0.1:8080", "--api-key-file",
             "/etc/intake/api-key", "--out", "/out/events.jsonl"],
    "volumeMounts": [
        {"name": "intake-key", "mountPath": "/etc/intake", "readOnly": True},
        {"name": "intake-out", "mountPath": "/out"},
    ],
})
spec["volumes"].append({"name": "intake-key", "hostPath": {"path": intake, "type": "Directory"}})
spec["volumes"].append({"name": "intake-out", "hostPath": {"path": intake + "/out", "type": "Directory"}})
yaml.safe_dump(pod, open(dst, "w"), sort_keys=False)
PY

pm kube play --network none --configmap "$work/configmap.yaml" "$manifest" >/dev/null
pm ps --pod --format '{{.Names}} {{.Status}}'

events="$intake_dir/out/events.jsonl"
logs_dir="$(pm volume inspect --format '{{.Mountpoint}}' "$(pm inspect user-msvc-user-msvc --format '{{range .Mounts}}{{if eq .Destination "/var/log"}}{{.Name}}{{end}}{{end}}')")"
app_log="$logs_dir/user-msvc.log"

# Waits until every line the app has written so far has arrived; prints what it found.
check_all_arrived() {
  python3 - "$app_log" "$events" "$1" <<'PY'
import json, sys, time
app_log, events, what = sys.argv[1:4]
def seqs_written():
    with open(app_log, "rb") as f:
        return [int(l[3:13]) for l in f.read().split(b"\n") if len(l) > 13]
written = seqs_written()
deadline = time.time() + 60
while True:
    arrived, dups, hosts, tags = {}, 0, set(), set()
    try:
        for line in open(events):
            e = json.loads(line)
            seq = int(e["message"][3:13])
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

echo "== rotate the API key as the kubelet does"
before=$(wc -l < "$events")
gen=2
mkdir "$secret/..2026_11_26_10_00_0$gen"
echo "key-two" > "$secret/..2026_11_26_10_00_0$gen/api-key"
chmod -R a+rX "$secret"
ln -s "..2026_11_26_10_00_0$gen" "$secret/..data_tmp"
mv -T "$secret/..data_tmp" "$secret/..data"
rm -rf "$secret/..2026_11_26_10_00_01"
echo "key-two" > "$intake_dir/api-key"
sleep 5
check_all_arrived "after the key rotation"
after=$(wc -l < "$events")
[ "$after" -gt "$before" ] || { echo "nothing accepted with the new key"; exit 1; }
pm logs user-msvc-sidelog 2>&1 | grep -q "API key changed" || { echo "sidelog did not report the new key"; exit 1; }
echo "seed Pod: ok ($after events; the new key in use without a restart)"
