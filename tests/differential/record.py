#!/usr/bin/env python3
"""Record CheckPermission answers of real SpiceDB v1.54 for generated cases -> cases.json.

For each seed (start-seed, start-seed+1, ...) until --count cases are recorded:
  1. generate.generate(seed) gives a schema, relationships and ~150 candidate checks;
  2. one fresh SpiceDB instance (tests/oracle, embedded memory datastore) gets the schema and the
     relationships; a schema SpiceDB rejects discards the seed (counted, with SpiceDB's message);
  3. every candidate is checked with full consistency, --passes times (every other pass in
     reverse order), or --depth-passes times when some check of the case hits the depth limit.
     A candidate whose answers differ between passes is dropped as *unstable*: SpiceDB evaluates
     union/intersection/exclusion branches concurrently, so when one branch hits the depth limit
     and another decides the result, which one arrives first is a race;
  4. a seeded, balanced subset (about half true, errors and conditionals capped) is chosen; in a
     case where the depth limit was hit, the chosen checks run --verify-passes more times on a
     fresh instance and any whose answer changes is dropped too; the rest become the case.
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
import threading
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
CHUNK = 10  # candidates per worker round trip; a killed worker loses at most one chunk
MAX_HARNESS_FAILURES = 2  # per case, before the whole case is dropped


def is_depth_error(result) -> bool:
    """A max-depth error, as an oracle result or as an `expected` value."""
    return bool(result) and "error" in result and "max depth exceeded" in result["error"]["message"]


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
    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


class Recorder:
    """Records cases on one Oracle (one worker process). Not shared between threads."""

    def __init__(self, o: oracle.Oracle, passes: int, depth_passes: int, verify_passes: int, case_budget: float):
        self.o = o
        self.passes = passes
        self.depth_passes = max(passes, depth_passes)
        self.verify_passes = verify_passes
        self.case_budget = case_budget

    def _fresh(self, case: dict):
        inst = self.o.instance()
        err = inst.write_schema(case["schema"])
        if err:
            inst.close()
            raise CaseDropped("schema_rejected", f"schema rejected: {err['code']}: {err['message']}")
        if case["relationships"]:
            err = inst.write_relationships(case["relationships"])
            if err:
                inst.close()
                raise CaseDropped("write_rejected", f"relationships rejected: {err['code']}: {err['message']}")
        return inst

    def evaluate(self, case: dict, stats: collections.Counter, indices: list[int], passes: int,
                 depth_passes: int) -> dict[int, list[dict | None]]:
        """Candidate index -> one result per pass (None: harness failure). `depth_passes` passes
        instead of `passes` once some answer is a max-depth error."""
        cands = {i: parse_check_strings(case["candidates"][i]) for i in indices}
        results: dict[int, list[dict | None]] = {i: [] for i in indices}
        failures = 0
        deadline = time.monotonic() + self.case_budget

        def harness_failure() -> None:
            nonlocal failures
            failures += 1
            if failures > MAX_HARNESS_FAILURES:
                raise CaseDropped("harness_dropped",
                                  f"more than {MAX_HARNESS_FAILURES} harness failures (watchdog or timeout)")

        inst = self._fresh(case)
        try:
            p = 0
            while p < passes or (p < depth_passes and any(map(is_depth_error, sum(results.values(), [])))):
                order = list(indices)
                if p % 2 == 1:
                    order.reverse()
                for start in range(0, len(order), CHUNK):
                    if time.monotonic() > deadline:
                        raise CaseDropped("harness_dropped", f"case took more than {self.case_budget:.0f}s")
                    idx = order[start:start + CHUNK]
                    try:
                        got: list[dict | None] = inst.check([cands[i] for i in idx])
                    except oracle.OracleError:
                        # the worker died or timed out: redo this chunk one check at a time
                        stats["worker_restarts"] += 1
                        harness_failure()
                        got = []
                        for i in idx:
                            inst.close()  # a no-op for an instance of a dead worker
                            inst = self._fresh(case)
                            try:
                                got.append(inst.check([cands[i]])[0])
                            except oracle.OracleError:
                                stats["worker_restarts"] += 1
                                harness_failure()
                                got.append(None)
                        inst.close()
                        inst = self._fresh(case)
                    for i, g in zip(idx, got):
                        results[i].append(g)
                p += 1
        finally:
            inst.close()
        return results

    def record(self, seed: int) -> tuple[dict | None, collections.Counter, dict | None]:
        """(case or None, stats of this seed, discard record or None)."""
        stats: collections.Counter = collections.Counter()
        case = generate.generate(seed)
        try:
            results = self.evaluate(case, stats, list(range(len(case["candidates"]))), self.passes,
                                    self.depth_passes)
        except CaseDropped as e:
            stats[e.kind] += 1
            return None, stats, {"seed": seed, "kind": e.kind, "reason": str(e)}
        had_depth_errors = any(map(is_depth_error, sum(results.values(), [])))

        buckets: dict[str, list[int]] = {"true": [], "false": [], "conditional": [], "depth": [], "error": []}
        answers: dict[int, tuple] = {}
        for i, rs in sorted(results.items()):
            if any(r is None for r in rs):
                stats["harness_failed_checks"] += 1
                continue
            outs = [outcome(r) for r in rs]
            if any(json.dumps(o, sort_keys=True) != json.dumps(outs[0], sort_keys=True) for o in outs[1:]):
                stats["unstable_checks"] += 1
                continue
            exp, missing = outs[0]
            if isinstance(exp, dict) and exp["error"]["code"] in UNRECORDABLE_CODES:
                stats["timing_errors"] += 1
                continue
            answers[i] = (exp, missing)
            if isinstance(exp, dict):
                kind = "depth" if is_depth_error(exp) else "error"
            else:
                kind = {"HAS_PERMISSION": "true", "NO_PERMISSION": "false", "CONDITIONAL_PERMISSION": "conditional"}[exp]
            buckets[kind].append(i)

        # a balanced, seeded choice: about half true; depth errors, other errors (invalid requests)
        # and conditionals capped; false fills the rest
        rng = random.Random(seed * 7919 + 17)
        n = min(case["target_checks"], len(answers))
        quota = {"true": n // 2, "depth": max(2, n // 5), "error": 2, "conditional": max(2, n // 4)}
        chosen: list[int] = []
        for kind in ("true", "depth", "error", "conditional"):
            pool = buckets[kind]
            chosen += rng.sample(pool, min(len(pool), quota[kind]))
        chosen += rng.sample(buckets["false"], min(len(buckets["false"]), n - len(chosen)))
        if len(chosen) < n:  # not enough falses: top up with whatever is left
            taken = set(chosen)
            chosen += rng.sample([i for i in sorted(answers) if i not in taken], n - len(chosen))
        chosen.sort()

        if had_depth_errors and self.verify_passes and chosen:
            # Where the depth limit is in play, answers can be races (see the module doc): run
            # the chosen checks again, on a fresh instance, and drop any that change.
            try:
                again = self.evaluate(case, stats, chosen, self.verify_passes, self.verify_passes)
            except CaseDropped as e:
                stats[e.kind] += 1
                return None, stats, {"seed": seed, "kind": e.kind, "reason": "verification: " + str(e)}
            stable = []
            for i in chosen:
                if all(r is not None and json.dumps(outcome(r), sort_keys=True) ==
                       json.dumps(answers[i], sort_keys=True) for r in again[i]):
                    stable.append(i)
                else:
                    stats["unstable_on_verification"] += 1
            chosen = stable
        if not chosen:
            stats["no_checks"] += 1
            return None, stats, {"seed": seed, "kind": "no_checks", "reason": "no stable answers"}

        checks = []
        for i in chosen:
            c = dict(case["candidates"][i])
            exp, missing = answers[i]
            c["expected"] = exp
            if missing:
                c["missing_context"] = missing
            checks.append(c)
        return {"seed": seed, "schema": case["schema"], "relationships": case["relationships"],
                "checks": checks}, stats, None


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


def record_in_order(count: int, jobs: int, recorder, max_rss_mb: int, timeout: float, what: str,
                    total: int | None = None) -> tuple[list[tuple], dict[int, float]]:
    """Record items 0, 1, 2, ... (at most `total`) on `jobs` oracle workers until the first items,
    without gaps, hold `count` recorded cases (so the outcome does not depend on `jobs`).

    `recorder(oracle)` gives, per worker, a function item index -> (case or None, stats, discard
    record or None). Returns the results of the items used, in order, and seconds per item.
    """
    t0 = time.monotonic()
    lock = threading.Lock()
    done: dict[int, tuple] = {}
    next_item = [0]
    in_flight: set[int] = set()
    elapsed: dict[int, float] = {}

    def used() -> int:
        """Items 0..k-1 hold `count` cases (or are all there is): k; else 0."""
        n = i = 0
        while i in done:
            n += done[i][0] is not None
            i += 1
            if n >= count or i == total:
                return i
        return 0

    def worker() -> None:
        with oracle.Oracle(max_rss_mb=max_rss_mb, timeout=timeout) as o:
            record_item = recorder(o)
            while True:
                with lock:
                    if used() or (total is not None and next_item[0] >= total and not in_flight):
                        return
                    accepted = sum(r[0] is not None for r in done.values())
                    # wait while enough items are in flight: one of them may still fail
                    busy = accepted + len(in_flight) >= count or (total is not None and next_item[0] >= total)
                    if not busy:
                        i = next_item[0]
                        next_item[0] += 1
                        in_flight.add(i)
                if busy:
                    time.sleep(0.2)
                    continue
                started = time.monotonic()
                result = record_item(i)
                with lock:
                    in_flight.discard(i)
                    elapsed[i] = time.monotonic() - started
                    done[i] = result
                    if len(done) % 50 == 0:
                        print(f"  {len(done)} {what}, {sum(r[0] is not None for r in done.values())} cases, "
                              f"{time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=worker) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    n = used() or len(done)
    return [done[i] for i in range(n)], {i: t for i, t in elapsed.items() if i < n}


def main() -> int:
    p = argparse.ArgumentParser(description="Record SpiceDB's CheckPermission answers for generated cases.")
    p.add_argument("--count", type=int, default=640, help="cases to record (default 640)")
    p.add_argument("--start-seed", type=int, default=1, help="first seed (default 1)")
    p.add_argument("--out", type=Path, default=HERE / "cases.json")
    p.add_argument("--passes", type=int, default=2, help="evaluations per candidate; unstable ones are dropped")
    p.add_argument("--depth-passes", type=int, default=4,
                   help="evaluations per candidate in cases where some check hits the depth limit (default 4)")
    p.add_argument("--verify-passes", type=int, default=6,
                   help="in those cases, evaluations of the chosen checks on a fresh instance (default 6)")
    p.add_argument("--jobs", type=int, default=2, help="oracle worker processes in parallel (default 2)")
    p.add_argument("--max-rss-mb", type=int, default=int(os.environ.get("TRELLIS_ORACLE_MAX_RSS_MB", 2048)),
                   help="watchdog limit per worker (default 2048)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per oracle request (default 10)")
    p.add_argument("--case-budget", type=float, default=120.0, help="seconds per case before it is dropped")
    p.add_argument("--discarded", type=Path, help="also write the discarded seeds with reasons (JSON)")
    args = p.parse_args()

    t0 = time.monotonic()

    def recorder(o: oracle.Oracle):
        rec = Recorder(o, args.passes, args.depth_passes, args.verify_passes, args.case_budget)
        return lambda i: rec.record(args.start_seed + i)

    results, seconds = record_in_order(args.count, args.jobs, recorder, args.max_rss_mb, args.timeout, "seeds")
    elapsed = {args.start_seed + i: t for i, t in seconds.items()}

    # the first --count cases in seed order; totals cover only the seeds used
    cases: list[dict] = []
    stats: collections.Counter = collections.Counter()
    discarded: list[dict] = []
    for case, st, disc in results:
        stats.update(st)
        if case is not None:
            cases.append(case)
        if disc is not None:
            discarded.append(disc)
    last_seed = args.start_seed + len(results) - 1
    write_cases(args.out, cases)
    if args.discarded:
        args.discarded.write_text(json.dumps(discarded, indent=1) + "\n")

    mix = collections.Counter(expected_kind(c["expected"]) for case in cases for c in case["checks"])
    n_checks = sum(mix.values())
    errors = sum(v for k, v in mix.items() if k.startswith("error:"))
    cmd = ["python3", "tests/differential/record.py", f"--count {args.count}", f"--start-seed {args.start_seed}"]
    if args.passes != 2:
        cmd.append(f"--passes {args.passes}")
    if args.depth_passes != 4:
        cmd.append(f"--depth-passes {args.depth_passes}")
    if args.verify_passes != 6:
        cmd.append(f"--verify-passes {args.verify_passes}")
    if args.out != HERE / "cases.json":
        cmd.append(f"--out {args.out}")
    print(f"command: {' '.join(cmd)}")
    print(f"seeds {args.start_seed}..{last_seed}: {len(cases)} cases, {n_checks} checks "
          f"({os.path.getsize(args.out) / 1e6:.2f} MB) in {time.monotonic() - t0:.0f}s")
    print(f"answers: true {mix['HAS_PERMISSION']}, false {mix['NO_PERMISSION']}, "
          f"conditional {mix['CONDITIONAL_PERMISSION']}, error {errors} "
          + "(" + ", ".join(f"{k[6:]} {v}" for k, v in sorted(mix.items()) if k.startswith("error:")) + ")")
    print(f"discarded seeds: schema rejected {stats['schema_rejected']}, relationships rejected "
          f"{stats['write_rejected']}, harness failures {stats['harness_dropped']}, no stable checks {stats['no_checks']}")
    print(f"dropped checks: unstable {stats['unstable_checks']} (+{stats['unstable_on_verification']} on "
          f"verification), harness failures {stats['harness_failed_checks']}, "
          f"timing errors {stats['timing_errors']}; worker restarts {stats['worker_restarts']}")
    slow = sorted((s for s in elapsed if s <= last_seed and elapsed[s] > 10), key=lambda s: -elapsed[s])
    if slow:
        print("slowest seeds: " + ", ".join(f"{s} ({elapsed[s]:.0f}s)" for s in slow[:10]))
    reasons = collections.Counter(d["reason"].split("\n")[0][:160] for d in discarded)
    for reason, k in reasons.most_common(10):
        print(f"  {k} x {reason}")
    return 0


def bootstrap(script: str = __file__) -> None:
    """Run `script` under the oracle's venv. (oracle._bootstrap() re-execs oracle.py itself, not the caller.)"""
    os.environ.setdefault("SPICEDB_LIBRARY_PATH", str(oracle.oracle_dir() / oracle.LIB_SUBPATH))
    venv = oracle.oracle_dir() / "venv"
    py = venv / "bin" / "python"
    if Path(sys.prefix).resolve() != venv.resolve():
        if not py.exists():
            sys.exit(f"{Path(script).name}: no oracle venv at {venv}; run tests/oracle/setup.sh first")
        os.execv(str(py), [str(py), str(Path(script).resolve()), *sys.argv[1:]])


if __name__ == "__main__":
    bootstrap()
    sys.exit(main())
