#!/usr/bin/env python3
"""Record CheckPermission answers of real SpiceDB v1.54 for generated cases -> cases.json.

For each seed (start-seed, start-seed+1, ...) until --count cases are recorded:
  1. generate.generate(seed) gives a schema, relationships and ~150 candidate checks;
  2. one fresh SpiceDB instance (tests/oracle, embedded memory datastore) gets the schema and the
     relationships; a schema SpiceDB rejects discards the seed (counted, with SpiceDB's message);
  3. every candidate is checked with full consistency, --passes times (the later passes in
     reverse order). A candidate whose answers differ between passes is dropped as *unstable*:
     SpiceDB evaluates union/intersection/exclusion branches concurrently, so when one branch
     hits the depth limit and another decides the result, which one arrives first is a race;
  4. a seeded, balanced subset (about half true, errors and conditionals capped) becomes the case.
Harness failures (the worker killed by the memory watchdog, timeouts) drop the affected checks,
and a case with more than a few of them is dropped entirely; both are counted.

Usage:
  python3 tests/differential/record.py [--count 640] [--start-seed 1] [--out tests/differential/cases.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "oracle"))
sys.path.insert(0, str(HERE))

import oracle  # noqa: E402
import generate  # noqa: E402

# Error codes that depend on timing or the harness rather than on the data: never recorded.
UNRECORDABLE_CODES = {"DEADLINE_EXCEEDED", "CANCELLED", "UNAVAILABLE"}
CHUNK = 25  # candidates per worker round trip; a killed worker loses at most one chunk
MAX_HARNESS_FAILURES = 3  # per case, before the whole case is dropped


def parse_check_strings(c: dict) -> dict:
    """Case check (strings) -> the dict form tests/oracle expects."""
    return {
        "resource": oracle.parse_object(c["resource"]),
        "permission": c["permission"],
        "subject": oracle.parse_subject(c["subject"]),
        **({"context": c["context"]} if "context" in c else {}),
    }


def outcome(result: dict):
    """Oracle check result -> the `expected` value of cases.json (plus missing context)."""
    if "error" in result:
        e = result["error"]
        return {"error": {"code": e["code"], "message": e["message"]}}, None
    return result["permissionship"], result.get("missing_context")


class CaseDropped(Exception):
    pass


class Recorder:
    def __init__(self, o: oracle.Oracle, passes: int):
        self.o = o
        self.passes = passes
        self.stats = collections.Counter()
        self.discarded: list[dict] = []

    def _fresh(self, case: dict):
        inst = self.o.instance()
        err = inst.write_schema(case["schema"])
        if err:
            inst.close()
            raise CaseDropped(f"schema rejected: {err['code']}: {err['message']}")
        if case["relationships"]:
            err = inst.write_relationships(case["relationships"])
            if err:
                inst.close()
                raise CaseDropped(f"relationships rejected: {err['code']}: {err['message']}")
        return inst

    def evaluate(self, case: dict) -> list[list[dict | None]]:
        """Per candidate, one result per pass (None: harness failure)."""
        cands = [parse_check_strings(c) for c in case["candidates"]]
        results: list[list[dict | None]] = [[] for _ in cands]
        failures = 0
        inst = self._fresh(case)
        try:
            for p in range(self.passes):
                order = list(range(len(cands)))
                if p % 2 == 1:
                    order.reverse()
                for start in range(0, len(order), CHUNK):
                    idx = order[start:start + CHUNK]
                    try:
                        got = inst.check([cands[i] for i in idx])
                    except oracle.OracleError:
                        # the worker died or timed out: redo this chunk one check at a time
                        self.stats["worker_restarts"] += 1
                        got = []
                        for i in idx:
                            if failures > MAX_HARNESS_FAILURES:
                                got.append(None)
                                continue
                            try:
                                inst = self._fresh(case)
                                got.append(inst.check([cands[i]])[0])
                            except oracle.OracleError:
                                failures += 1
                                got.append(None)
                        inst = self._fresh(case)
                    for i, g in zip(idx, got):
                        results[i].append(g)
                if failures > MAX_HARNESS_FAILURES:
                    raise CaseDropped(f"more than {MAX_HARNESS_FAILURES} harness failures (watchdog/timeouts)")
        finally:
            inst.close()
        return results

    def record(self, seed: int) -> dict | None:
        case = generate.generate(seed)
        try:
            results = self.evaluate(case)
        except CaseDropped as e:
            reason = str(e)
            kind = "schema_rejected" if reason.startswith("schema") else (
                "write_rejected" if reason.startswith("relationships") else "harness_dropped")
            self.stats[kind] += 1
            self.discarded.append({"seed": seed, "kind": kind, "reason": reason})
            return None

        buckets: dict[str, list[int]] = {"true": [], "false": [], "conditional": [], "error": []}
        answers: dict[int, tuple] = {}
        for i, rs in enumerate(results):
            if any(r is None for r in rs):
                self.stats["harness_failed_checks"] += 1
                continue
            outs = [outcome(r) for r in rs]
            if any(json.dumps(o, sort_keys=True) != json.dumps(outs[0], sort_keys=True) for o in outs[1:]):
                self.stats["unstable_checks"] += 1
                continue
            exp, missing = outs[0]
            if isinstance(exp, dict) and exp["error"]["code"] in UNRECORDABLE_CODES:
                self.stats["timing_errors"] += 1
                continue
            answers[i] = (exp, missing)
            kind = {"HAS_PERMISSION": "true", "NO_PERMISSION": "false",
                    "CONDITIONAL_PERMISSION": "conditional"}.get(exp, "error") if isinstance(exp, str) else "error"
            buckets[kind].append(i)

        rng = random.Random(seed * 7919 + 17)
        n = min(case["target_checks"], len(answers))
        quota = {
            "true": n // 2,
            "error": max(2, n // 5),
            "conditional": max(2, n // 5),
        }
        chosen: list[int] = []
        for kind in ("true", "error", "conditional"):
            pool = buckets[kind]
            chosen += rng.sample(pool, min(len(pool), quota[kind]))
        rest = [i for i in buckets["false"]]
        chosen += rng.sample(rest, min(len(rest), n - len(chosen)))
        if len(chosen) < n:  # not enough falses: top up with whatever is left
            left = [i for i in sorted(answers) if i not in set(chosen)]
            chosen += rng.sample(left, n - len(chosen))
        chosen.sort()

        checks = []
        for i in chosen:
            c = dict(case["candidates"][i])
            exp, missing = answers[i]
            c["expected"] = exp
            if missing:
                c["missing_context"] = missing
            checks.append(c)
        if not checks:
            self.stats["no_checks"] += 1
            self.discarded.append({"seed": seed, "kind": "no_checks", "reason": "no stable answers"})
            return None
        return {"seed": seed, "schema": case["schema"], "relationships": case["relationships"], "checks": checks}


def expected_kind(exp) -> str:
    if isinstance(exp, dict):
        return "error:" + exp["error"]["code"]
    return exp


def write_cases(path: Path, cases: list[dict]) -> None:
    """One case per line: compact, yet diffs stay readable."""
    tmp = path.with_suffix(".json.partial")
    with open(tmp, "w") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n]\n")
    os.replace(tmp, path)


def main() -> int:
    p = argparse.ArgumentParser(description="Record SpiceDB's CheckPermission answers for generated cases.")
    p.add_argument("--count", type=int, default=640, help="cases to record (default 640)")
    p.add_argument("--start-seed", type=int, default=1, help="first seed (default 1)")
    p.add_argument("--out", type=Path, default=HERE / "cases.json")
    p.add_argument("--passes", type=int, default=2, help="evaluations per candidate; unstable ones are dropped")
    p.add_argument("--max-rss-mb", type=int, default=int(os.environ.get("TRELLIS_ORACLE_MAX_RSS_MB", 3072)))
    p.add_argument("--timeout", type=float, default=90.0, help="seconds per oracle request (default 90)")
    p.add_argument("--discarded", type=Path, help="also write the discarded seeds with reasons (JSON)")
    args = p.parse_args()

    t0 = time.monotonic()
    cases: list[dict] = []
    seed = args.start_seed
    with oracle.Oracle(max_rss_mb=args.max_rss_mb, timeout=args.timeout) as o:
        rec = Recorder(o, args.passes)
        while len(cases) < args.count:
            case = rec.record(seed)
            if case is not None:
                cases.append(case)
            seed += 1
            if seed % 50 == 0:
                print(f"  seed {seed}: {len(cases)} cases, {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    last_seed = seed - 1
    write_cases(args.out, cases)
    if args.discarded:
        args.discarded.write_text(json.dumps(rec.discarded, indent=1) + "\n")

    mix = collections.Counter(expected_kind(c["expected"]) for case in cases for c in case["checks"])
    n_checks = sum(mix.values())
    errors = sum(v for k, v in mix.items() if k.startswith("error:"))
    st = rec.stats
    cmd = " ".join(["python3", "tests/differential/record.py", f"--count {args.count}",
                    f"--start-seed {args.start_seed}"]
                   + ([f"--passes {args.passes}"] if args.passes != 2 else [])
                   + ([f"--out {args.out}"] if args.out != HERE / "cases.json" else []))
    print(f"command: {cmd}")
    print(f"seeds {args.start_seed}..{last_seed}: {len(cases)} cases, {n_checks} checks "
          f"({os.path.getsize(args.out) / 1e6:.2f} MB) in {time.monotonic() - t0:.0f}s")
    print(f"answers: true {mix['HAS_PERMISSION']}, false {mix['NO_PERMISSION']}, "
          f"conditional {mix['CONDITIONAL_PERMISSION']}, error {errors} "
          + "(" + ", ".join(f"{k[6:]} {v}" for k, v in sorted(mix.items()) if k.startswith("error:")) + ")")
    print(f"discarded seeds: schema rejected {st['schema_rejected']}, relationships rejected {st['write_rejected']}, "
          f"harness failures {st['harness_dropped']}, no stable checks {st['no_checks']}")
    print(f"dropped checks: unstable {st['unstable_checks']}, harness failures {st['harness_failed_checks']}, "
          f"timing errors {st['timing_errors']}; worker restarts {st['worker_restarts']}")
    reasons = collections.Counter(d["reason"].split("\n")[0][:160] for d in rec.discarded)
    for reason, k in reasons.most_common(8):
        print(f"  {k} x {reason}")
    return 0


def bootstrap() -> None:
    """Run under the oracle's venv. (oracle._bootstrap() re-execs oracle.py itself, not the caller.)"""
    os.environ.setdefault("SPICEDB_LIBRARY_PATH", str(oracle.oracle_dir() / oracle.LIB_SUBPATH))
    venv = oracle.oracle_dir() / "venv"
    py = venv / "bin" / "python"
    if Path(sys.prefix).resolve() != venv.resolve():
        if not py.exists():
            sys.exit(f"record.py: no oracle venv at {venv}; run tests/oracle/setup.sh first")
        os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])


if __name__ == "__main__":
    bootstrap()
    sys.exit(main())
