#!/usr/bin/env python3
"""Turns a Pod manifest into what podman 4.3 can play, the same for every seed-Pod play.

What changes, and why:
- `secret:` volumes crash podman 4.3: each becomes a hostPath directory laid out as the
  kubelet lays out a Secret volume (the play makes it, and rotates it the kubelet's way);
  a `downwardAPI:` volume becomes a hostPath directory with the files the kubelet writes;
- container ports and probes are dropped: with `--network none` podman refuses port
  mappings, and it runs probes through a shell inside the container, which a scratch image
  does not have;
- Downward API variables podman 4.3 does not resolve (the namespace, the node, the host's
  address) get fixed values;
- an intake container (`sidelog intake` on 127.0.0.1:8080, which the Pod's containers share)
  is added, with its key and output directories;
- ConfigMaps go to a file of their own, for `podman kube play --configmap`.

Usage: podman-pod.py IN OUT CONFIGMAPS INTAKE_DIR [--secret DIR] [--downward DIR]
                     [--env CONTAINER NAME VALUE]...
"""
import sys

import yaml

STAND_INS = {"metadata.namespace": "default", "spec.nodeName": "podman", "status.hostIP": "10.0.0.1"}


def main(argv):
    src, dst, configmaps, intake = argv[1:5]
    opts = {"secret": None, "downward": None, "env": []}
    rest = argv[5:]
    while rest:
        flag = rest.pop(0)
        if flag == "--env":
            opts["env"].append((rest.pop(0), rest.pop(0), rest.pop(0)))
        else:
            opts[flag[2:]] = rest.pop(0)
    docs = [d for d in yaml.safe_load_all(open(src)) if d]
    yaml.safe_dump_all([d for d in docs if d["kind"] == "ConfigMap"], open(configmaps, "w"), sort_keys=False)
    pod = next(d for d in docs if d["kind"] == "Pod")
    spec = pod["spec"]
    for v in spec["volumes"]:
        for kind, directory in (("secret", opts["secret"]), ("downwardAPI", opts["downward"])):
            if kind in v:
                del v[kind]
                v["hostPath"] = {"path": directory, "type": "Directory"}
    for c in spec["containers"]:
        for key in ("ports", "livenessProbe", "readinessProbe"):
            c.pop(key, None)
        for e in c.get("env", []):
            field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if field in STAND_INS:
                del e["valueFrom"]
                e["value"] = STAND_INS[field]
    for container, name, value in opts["env"]:
        c = next(c for c in spec["containers"] if c["name"] == container)
        c.setdefault("env", []).append({"name": name, "value": value})
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


if __name__ == "__main__":
    main(sys.argv)
