"""Checks that the Kubernetes manifests in config/kubernetes and the
Dockerfile fit together and fit the binary, since no cluster runs here:
selectors select the pods, named ports exist, the StatefulSet's service is
the headless one, referenced ConfigMaps and Secrets exist, every TRELLIS_*
variable is one `trellis serve` reads, the container commands parse, and
the image's ports and user match the pod's. Usage:
    check_wiring.py REPO_ROOT TRELLIS_BINARY
Prints one line per check and `N passed, M failed`; exits 1 on a failure."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

root, binary = Path(sys.argv[1]), sys.argv[2]
docs = []
for path in sorted((root / "config" / "kubernetes").glob("*.yaml")):
    docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
by_kind = {}
for doc in docs:
    by_kind.setdefault(doc["kind"], []).append(doc)

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))


def named(kind, name):
    return next((d for d in by_kind.get(kind, []) if d["metadata"]["name"] == name), None)


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


statefulset = by_kind["StatefulSet"][0]
pod = statefulset["spec"]["template"]
pod_labels = pod["metadata"]["labels"]
container = pod["spec"]["containers"][0]
container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}

check("the StatefulSet's selector selects its pods",
      matches(statefulset["spec"]["selector"]["matchLabels"], pod_labels))
headless = named("Service", statefulset["spec"]["serviceName"])
check("the StatefulSet's serviceName is a headless Service",
      headless is not None and headless["spec"].get("clusterIP") == "None",
      statefulset["spec"]["serviceName"])
check("three replicas", statefulset["spec"]["replicas"] == 3)

for service in by_kind["Service"]:
    name = service["metadata"]["name"]
    check(f"Service {name} selects the Trellis pods", matches(service["spec"]["selector"], pod_labels))
    for port in service["spec"]["ports"]:
        target = port["targetPort"]
        number = container_ports.get(target) if isinstance(target, str) else target
        check(f"Service {name} port {port['name']} targets a container port",
              number == port["port"], f"{target} -> {number}")

for pdb in by_kind["PodDisruptionBudget"]:
    check("the PodDisruptionBudget selects the pods",
          matches(pdb["spec"]["selector"]["matchLabels"], pod_labels))
    check("the PodDisruptionBudget leaves room for one disruption",
          pdb["spec"]["minAvailable"] < statefulset["spec"]["replicas"])

help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, check=True).stdout
accepted = set(re.findall(r"env: (TRELLIS_[A-Z0-9_]+)", help_text))
check("`trellis serve --help` lists its environment variables", len(accepted) > 10, str(len(accepted)))

jobs = by_kind["Job"]
workloads = [("StatefulSet", pod["spec"])] + [("Job", job["spec"]["template"]["spec"]) for job in jobs]
for kind, spec in workloads:
    for c in spec["containers"]:
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                ref = source["configMapRef"]["name"]
                check(f"{kind} ConfigMap {ref} exists", named("ConfigMap", ref) is not None)
            if "secretRef" in source:
                ref = source["secretRef"]["name"]
                check(f"{kind} Secret {ref} exists", named("Secret", ref) is not None)
        parsed = subprocess.run([binary, *c["args"], "--help"], capture_output=True, text=True)
        check(f"{kind} command `trellis {' '.join(c['args'])}` parses", parsed.returncode == 0, parsed.stderr)
    check(f"{kind} runs as the image's user", spec["securityContext"]["runAsUser"] == 10001)

for kind in ("ConfigMap", "Secret"):
    for doc in by_kind[kind]:
        keys = set(doc.get("data", {})) | set(doc.get("stringData", {}))
        unknown = sorted(keys - accepted)
        check(f"{kind} {doc['metadata']['name']} sets only variables `trellis serve` reads", not unknown, unknown)

grpc_port = container_ports["grpc"]
check("readiness asks the gRPC health service on the API port",
      container["readinessProbe"]["grpc"]["port"] == grpc_port)
check("liveness does not depend on the database (TCP only)", "tcpSocket" in container["livenessProbe"])
grace = named("ConfigMap", "trellis")["data"]["TRELLIS_SHUTDOWN_GRACE"]
check("the pod's termination grace outlasts the server's drain",
      pod["spec"]["terminationGracePeriodSeconds"] > int(grace.rstrip("s")), grace)

dockerfile = (root / "Dockerfile").read_text()
exposed = {int(p) for line in dockerfile.splitlines() if line.startswith("EXPOSE") for p in line.split()[1:]}
check("the image exposes exactly the pod's ports", exposed == set(container_ports.values()),
      f"{exposed} vs {container_ports}")
check("the image runs as user 10001", "USER 10001" in dockerfile)
check("the image builds with --locked", "--locked" in dockerfile)

passed, failed = results.count(True), results.count(False)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
