#!/usr/bin/env bash
# Shared by the podman plays of the seed Pods (podman-seed-pod.sh, podman-agent-pod.sh):
# podman itself, the images built FROM scratch around static binaries, a Secret volume laid
# out as the kubelet lays it out, and the Pod torn down at the end. Source it; it expects
# $root (the repository) and $work (a scratch directory) to be set.

pm() { podman --runtime runc --cgroup-manager=cgroupfs "$@"; }

# podman and runc from Debian's packages when missing; PyYAML for the manifest edits.
podman_setup() {
  echo "== podman"
  if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
    local sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq podman runc >/dev/null
  fi
  python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml 2>/dev/null \
    || python3 -m pip install -q --break-system-packages pyyaml
  printf '[containers]\ndefault_ulimits = []\n' > "$work/containers.conf"
  export CONTAINERS_CONF="$work/containers.conf"
  podman --version
}

# The Pod's binary as docker/Dockerfile builds it (the shipper alone, `dist` profile), as
# image sidelog:0.1.0; and one with the development tools, sidelog-devtools:0.1.0, for the
# intake container only. Both FROM scratch: no base image can be pulled here.
build_images() {
  echo "== images (FROM scratch, static binaries)"
  target="$(rustc -vV | sed -n 's/^host: //p')"
  local static="-C target-feature=+crt-static"
  (cd "$root" && RUSTFLAGS="$static" \
    cargo build -p sidelog --profile dist --no-default-features --locked --target "$target" --quiet)
  (cd "$root" && RUSTFLAGS="$static" \
    cargo build --profile quick --locked --target "$target" --quiet)
  build_image "$root/target/$target/dist/sidelog" sidelog
  build_image "$root/target/$target/quick/sidelog" sidelog-devtools
  pm images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep sidelog
  if pm run --rm --network none sidelog:0.1.0 intake --help >/dev/null 2>&1; then
    echo "the Pod's image must not carry the built-in intake"; exit 1
  fi
}

build_image() {
  mkdir -p "$work/$2"
  cp "$1" "$work/$2/sidelog"
  cp "$root/docker/Dockerfile.scratch" "$work/$2/"
  pm build --quiet -f "$work/$2/Dockerfile.scratch" -t "$2:0.1.0" "$work/$2" >/dev/null
}

# secret_volume DIR FILE CONTENT: a Secret volume as the kubelet lays it out
# (FILE -> ..data/FILE, ..data -> ..<timestamp>).
secret_volume() {
  mkdir -p "$1/..2026_11_26_10_00_01"
  echo "$3" > "$1/..2026_11_26_10_00_01/$2"
  ln -s "..2026_11_26_10_00_01" "$1/..data"
  ln -s "..data/$2" "$1/$2"
  chmod -R a+rX "$1"
}

# rotate_secret DIR FILE CONTENT: what the kubelet does when the Secret changes: a new
# timestamped directory, a ..data_tmp link renamed over ..data, the old directory removed.
rotate_secret() {
  local old new
  old="$(readlink "$1/..data")"
  new="..2026_11_26_10_00_02"
  mkdir "$1/$new"
  echo "$3" > "$1/$new/$2"
  chmod -R a+rX "$1"
  ln -s "$new" "$1/..data_tmp"
  mv -T "$1/..data_tmp" "$1/..data"
  rm -rf "${1:?}/$old"
}

# rotate_and_check SECRET FILE CONTAINER CHECK EVENTS INTAKE_DIR: rotates the key the way the
# kubelet does (the intake takes only the new one from then on), runs CHECK "after the key
# rotation", and checks that more was accepted and that the shipper in CONTAINER said it took
# up the new key.
rotate_and_check() {
  echo "== rotate the API key as the kubelet does"
  local before after log
  before=$(wc -l < "$5")
  rotate_secret "$1" "$2" key-two
  echo "key-two" > "$6/api-key"
  sleep 5
  "$4" "after the key rotation"
  after=$(wc -l < "$5")
  [ "$after" -gt "$before" ] || { echo "nothing accepted with the new key"; exit 1; }
  # Read the log whole first: `grep -q` stops at the first match, and with pipefail the
  # writer's broken pipe would fail the check.
  log="$(pm logs "user-msvc-$3" 2>&1)"
  grep -q "API key changed" <<<"$log" || { echo "sidelog did not report the new key"; exit 1; }
  accepted=$after
}

# report_memory CONTAINER LABEL: the container's memory as the kubelet counts it: the working
# set (the cgroup's usage less its inactive file pages: container_memory_working_set_bytes)
# and the anonymous memory of its process (RssAnon), next to VmRSS, which no limit uses.
report_memory() {
  local pid cgroup usage inactive rss anon
  pid=$(pm inspect --format '{{.State.Pid}}' "$1")
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  anon=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status")
  cgroup=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' "/proc/$pid/cgroup")
  if [ -n "$cgroup" ] && [ -r "/sys/fs/cgroup/memory$cgroup/memory.usage_in_bytes" ]; then
    usage=$(cat "/sys/fs/cgroup/memory$cgroup/memory.usage_in_bytes")
    inactive=$(awk '$1 == "total_inactive_file" {print $2}' "/sys/fs/cgroup/memory$cgroup/memory.stat")
  else
    cgroup=$(awk -F: '$1 == "0" {print $3}' "/proc/$pid/cgroup")
    usage=$(cat "/sys/fs/cgroup$cgroup/memory.current")
    inactive=$(awk '$1 == "inactive_file" {print $2}' "/sys/fs/cgroup$cgroup/memory.stat")
  fi
  echo "memory of $1, $2: working set $(( (usage - inactive) / 1024 )) kB (cgroup usage $(( usage / 1024 )) kB less inactive files $(( inactive / 1024 )) kB); RssAnon ${anon} kB; VmRSS ${rss} kB"
  pm stats --no-stream --format '{{.Name}}: podman stats {{.MemUsage}}' "$1" 2>/dev/null || true
}

# teardown MANIFEST SIDECAR STATUS: on failure the sidecar's and the intake's logs, then the
# Pod down and the scratch directory gone.
teardown() {
  if [ -f "$1" ]; then
    if [ "$3" -ne 0 ]; then
      echo "--- $2's log"
      pm logs "user-msvc-$2" 2>&1 | tail -40 || true
      echo "--- intake's log"
      pm logs user-msvc-intake 2>&1 | tail -10 || true
    fi
    pm kube play --down "$1" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}

# The directory of the Pod's emptyDir mounted at $2 in container $1.
volume_dir() {
  pm volume inspect --format '{{.Mountpoint}}' \
    "$(pm inspect "$1" --format "{{range .Mounts}}{{if eq .Destination \"$2\"}}{{.Name}}{{end}}{{end}}")"
}
