#!/usr/bin/env python3
"""Record LookupResources/LookupSubjects answers of real SpiceDB v1.54 for the cases of cases.json
-> lookups.json (the check recordings stay as they are).

For each case of --cases (schema and relationships as recorded there; the first --count of them)
and --extra more cases made by generate.py's `wildcards` profile (seeds from --extra-start-seed;
wildcards with exclusions are rare in the checks' cases, and LookupSubjects has its own answer
shape for them):
  1. generate.lookup_candidates() gives ~36 candidate lookups (LookupResources and
     LookupSubjects, with and without request context when the schema has a caveat);
  2. one fresh SpiceDB instance (tests/oracle, in a worker process under a memory watchdog) gets
     the schema and relationships; every candidate runs --passes times (every other pass in
     reverse order), or --depth-passes times when some answer of the case is a max-depth error.
     A candidate whose answers differ between passes is dropped as *unstable* (SpiceDB races
     branches at its depth limit on cyclic data); one that kills the worker (memory) or times
     out is dropped and not run again; a case with more than --max-failures of those is dropped;
  3. a seeded, balanced subset (8-14 lookups, half of each kind, mostly non-empty answers,
     errors capped) is chosen; in a case where the depth limit was hit the chosen lookups run
     --verify-passes more times on a fresh instance, and any whose answer changes is dropped;
     a case left with fewer than --min-lookups is dropped.
An answer is the set of SpiceDB's distinct stream entries (order is traversal order, and SpiceDB
repeats some ids; see compare_lookups.py for how entries of one id are merged) or the error's
code, message and ErrorInfo reason. Errors that depend on timing are never recorded.

Usage (not in CI; about 10 minutes on 2 cores; the machine is shared, so nice it):
  nice -n 10 python3 tests/differential/record_lookups.py [--cases FILE] [--out FILE] [--count N]
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
sys.path.insert(0, str(HERE.parent / "oracle"))
sys.path.insert(0, str(HERE))

import compare_lookups as cl  # noqa: E402
import generate  # noqa: E402
import oracle  # noqa: E402
import record  # noqa: E402
from record import UNRECORDABLE_CODES, CaseDropped, is_depth_error  # noqa: E402


def ask(inst: oracle.Instance, q: dict) -> tuple[dict, collections.Counter]:
    """One lookup on SpiceDB -> (answer as recorded, notes on the raw stream: repeated entries)."""
    if q["kind"] == "lr":
        res = inst.lookup_resources(q["resource_type"], q["permission"], oracle.parse_subject(q["subject"]),
                                    q.get("context"))
    else:
        res = inst.lookup_subjects(oracle.parse_object(q["resource"]), q["permission"], q["subject_type"],
                                   q.get("subject_relation", ""), q.get("context"))
    notes: collections.Counter = collections.Counter()
    if res["error"]:
        e = res["error"]
        err = {"code": e["code"], "message": e["message"]}
        if e.get("reason"):
            err["reason"] = e["reason"]
        if res["results"]:
            notes["error_after_results"] += 1
        return {"error": err}, notes
    entries, repeats = cl.distinct_entries(res["results"])
    notes["repeated_entries"] += repeats
    notes["ids_with_distinct_entries"] += len(entries) - len({e["id"] for e in entries})
    return {"results": entries}, notes


def category(answer: dict) -> str:
    """depth, error, notable (results with a wildcard, exclusions or a conditional entry: rare,
    so favoured), nonempty or empty."""
    if "error" in answer:
        return "depth" if is_depth_error(answer) else "error"
    if any(e["id"] == "*" or e.get("excluded") or e["permissionship"] != "HAS_PERMISSION" for e in answer["results"]):
        return "notable"
    return "nonempty" if answer["results"] else "empty"


def any_depth_error(answers: dict[int, list[dict | None]]) -> bool:
    return any(is_depth_error(a) for rs in answers.values() for a in rs if a is not None)


def same(a: dict | None, b: dict | None) -> bool:
    return a is not None and b is not None and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class LookupRecorder(record.Recorder):
    """Records the lookups of cases on one Oracle (one worker process). Not shared between threads."""

    def __init__(self, o: oracle.Oracle, args: argparse.Namespace):
        super().__init__(o, args.passes, args.depth_passes, args.verify_passes, args.case_budget)
        self.max_failures = args.max_failures
        self.min_lookups = args.min_lookups

    def evaluate(self, case: dict, cands: list[dict], stats: collections.Counter, indices: list[int], passes: int,
                 depth_passes: int) -> tuple[dict[int, list[dict | None]], dict[int, collections.Counter]]:
        """Candidate index -> one answer per pass (None: the worker died or timed out on it; it is
        not run again), and the stream notes of its first pass."""
        answers: dict[int, list[dict | None]] = {i: [] for i in indices}
        notes: dict[int, collections.Counter] = {}
        blown: set[int] = set()
        deadline = time.monotonic() + self.case_budget
        inst = self._fresh(case)
        try:
            p = 0
            while p < passes or (p < depth_passes and any_depth_error(answers)):
                for i in (indices if p % 2 == 0 else indices[::-1]):
                    if i in blown:
                        continue
                    if time.monotonic() > deadline:
                        raise CaseDropped("harness_dropped", f"case took more than {self.case_budget:.0f}s")
                    try:
                        answer, note = ask(inst, cands[i])
                    except oracle.OracleError:
                        stats["worker_restarts"] += 1
                        blown.add(i)
                        answers[i].append(None)
                        if len(blown) > self.max_failures:
                            raise CaseDropped("harness_dropped", f"more than {self.max_failures} lookups blew up "
                                                                 "(memory watchdog or timeout)") from None
                        inst = self._fresh(case)  # the old instance died with its worker
                        continue
                    answers[i].append(answer)
                    notes.setdefault(i, note)
                p += 1
        finally:
            try:
                inst.close()
            except oracle.OracleError:
                pass
        return answers, notes

    def record(self, case: dict) -> tuple[dict | None, collections.Counter, dict | None]:
        """(case with its lookups or None, stats of this case, discard record or None)."""
        seed = case["seed"]
        stats: collections.Counter = collections.Counter()
        cands = generate.lookup_candidates(seed, case["schema"], case["relationships"])
        try:
            results, notes = self.evaluate(case, cands, stats, list(range(len(cands))), self.passes,
                                           self.depth_passes)
        except CaseDropped as e:
            stats[e.kind] += 1
            return None, stats, {"seed": seed, "kind": e.kind, "reason": str(e)}
        had_depth_errors = any_depth_error(results)

        answers: dict[int, dict] = {}
        buckets: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        for i, rs in sorted(results.items()):
            if any(r is None for r in rs):
                stats["harness_failed_lookups"] += 1
                continue
            if not all(same(r, rs[0]) for r in rs[1:]):
                stats["unstable_lookups"] += 1
                continue
            a = rs[0]
            if "error" in a and a["error"]["code"] in UNRECORDABLE_CODES:
                stats["timing_errors"] += 1
                continue
            if "results" in a:
                try:
                    cl.merge_by_id(a["results"])
                except cl.Irreconcilable:
                    stats["irreconcilable_lookups"] += 1
                    continue
            answers[i] = a
            buckets[(cands[i]["kind"], category(a))].append(i)

        chosen = self.choose(seed, answers, buckets, cands)
        if had_depth_errors and self.verify_passes and chosen:
            # where the depth limit is in play, answers can be races: ask again on a fresh instance
            try:
                again, _ = self.evaluate(case, cands, stats, chosen, self.verify_passes, self.verify_passes)
            except CaseDropped as e:
                stats[e.kind] += 1
                return None, stats, {"seed": seed, "kind": e.kind, "reason": "verification: " + str(e)}
            stable = [i for i in chosen if all(same(r, answers[i]) for r in again[i])]
            stats["unstable_on_verification"] += len(chosen) - len(stable)
            chosen = stable
        if len(chosen) < self.min_lookups:
            stats["too_few_lookups"] += 1
            return None, stats, {"seed": seed, "kind": "too_few_lookups",
                                 "reason": f"{len(chosen)} stable lookups (fewer than {self.min_lookups})"}
        for i in chosen:
            for k, v in notes.get(i, {}).items():
                stats[f"chosen_{k}"] += v
                stats[f"chosen_lookups_with_{k}"] += bool(v)
        lookups = [{**cands[i], "expected": answers[i]} for i in chosen]
        out = {"seed": seed, "schema": case["schema"], "relationships": case["relationships"]}
        if case.get("profile"):
            out["profile"] = case["profile"]
        return {**out, "lookups": lookups}, stats, None

    @staticmethod
    def choose(seed: int, answers: dict[int, dict], buckets: dict[tuple[str, str], list[int]],
               cands: list[dict]) -> list[int]:
        """A seeded, balanced choice: half LookupResources, half LookupSubjects; within each, about
        60% non-empty answers (notable ones first, up to 40%), max-depth errors and other errors
        capped, empty answers the rest."""
        rng = random.Random(seed * 7919 + 23)
        n = min(rng.randint(8, 14), len(answers))
        chosen: list[int] = []
        for kind, want in (("lr", n - n // 2), ("ls", n // 2)):
            quota = {"notable": -(-want * 2 // 5), "nonempty": -(-want * 3 // 5), "depth": max(1, want // 5),
                     "error": 1}
            picked: list[int] = []
            for cat in ("notable", "nonempty", "depth", "error"):
                pool = buckets.get((kind, cat), [])
                left = quota[cat] - (len(picked) if cat == "nonempty" else 0)  # non-empty counts notable ones
                picked += rng.sample(pool, min(len(pool), max(0, left)))
            pool = buckets.get((kind, "empty"), [])
            picked += rng.sample(pool, min(len(pool), max(0, want - len(picked))))
            if len(picked) < want:  # short of this kind's answers: whatever else there is of it
                rest = [i for i in sorted(answers) if cands[i]["kind"] == kind and i not in picked]
                picked += rng.sample(rest, min(len(rest), want - len(picked)))
            chosen += picked
        if len(chosen) < n:  # short of one kind: top up with the other
            rest = [i for i in sorted(answers) if i not in chosen]
            chosen += rng.sample(rest, min(len(rest), n - len(chosen)))
        return sorted(chosen)


def summary(cases: list[dict]) -> list[str]:
    """Totals of the recorded answers, for the closing report."""
    mix: collections.Counter = collections.Counter()
    for c in cases:
        for q in c["lookups"]:
            k, a = q["kind"], q["expected"]
            mix[k] += 1
            if "error" in a:
                mix[f"{k} error {a['error']['code']}" + (" max depth" if is_depth_error(a) else "")] += 1
                continue
            mix[f"{k} {'nonempty' if a['results'] else 'empty'}"] += 1
            mix[f"{k} with context"] += "context" in q
            for e in a["results"]:
                mix[f"{k} result {e['permissionship']}"] += 1
                mix[f"{k} result wildcard"] += e["id"] == "*"
                mix[f"{k} result with exclusions"] += bool(e.get("excluded"))
    lines = []
    for k in cl.KINDS:
        parts = [f"{name[len(k) + 1:]} {v}" for name, v in sorted(mix.items()) if name.startswith(k + " ")]
        lines.append(f"{k} {mix[k]}: " + ", ".join(parts))
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description="Record SpiceDB's LookupResources/LookupSubjects answers.")
    p.add_argument("--cases", type=Path, default=HERE / "cases.json", help="schemas and relationships (cases.json)")
    p.add_argument("--count", type=int, help="use the first COUNT cases of --cases (default: all)")
    p.add_argument("--extra", type=int, default=100, help="extra generated cases (default 100)")
    p.add_argument("--extra-start-seed", type=int, default=100001, help="first seed of the extra cases")
    p.add_argument("--extra-profile", choices=sorted(generate.PROFILES), default="wildcards")
    p.add_argument("--out", type=Path, default=HERE / "lookups.json")
    p.add_argument("--passes", type=int, default=2, help="evaluations per candidate; unstable ones are dropped")
    p.add_argument("--depth-passes", type=int, default=4,
                   help="evaluations per candidate in cases where some lookup hits the depth limit (default 4)")
    p.add_argument("--verify-passes", type=int, default=4,
                   help="in those cases, evaluations of the chosen lookups on a fresh instance (default 4)")
    p.add_argument("--jobs", type=int, default=2, help="oracle worker processes in parallel (default 2)")
    p.add_argument("--max-rss-mb", type=int, default=int(os.environ.get("TRELLIS_ORACLE_MAX_RSS_MB", 2048)),
                   help="watchdog limit per worker (default 2048)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per oracle request (default 5)")
    p.add_argument("--case-budget", type=float, default=90.0, help="seconds per case before it is dropped")
    p.add_argument("--max-failures", type=int, default=2, help="blown-up lookups per case before it is dropped")
    p.add_argument("--min-lookups", type=int, default=5, help="fewer stable lookups drop the case (default 5)")
    p.add_argument("--discarded", type=Path, help="also write the discarded cases with reasons (JSON)")
    args = p.parse_args()

    t0 = time.monotonic()
    sources = json.loads(args.cases.read_text())[:args.count]
    from_cases = len(sources)
    for seed in range(args.extra_start_seed, args.extra_start_seed + args.extra):
        g = generate.generate(seed, args.extra_profile)
        sources.append({"seed": seed, "schema": g["schema"], "relationships": g["relationships"],
                        "profile": args.extra_profile})

    def recorder(o: oracle.Oracle):
        rec = LookupRecorder(o, args)
        return lambda i: rec.record(sources[i])

    results, seconds = record.record_in_order(len(sources), args.jobs, recorder, args.max_rss_mb, args.timeout,
                                              "cases", total=len(sources))
    cases = [c for c, _, _ in results if c is not None]
    discarded = [d for _, _, d in results if d is not None]
    stats: collections.Counter = collections.Counter()
    for _, st, _ in results:
        stats.update(st)
    record.write_cases(args.out, cases)
    if args.discarded:
        args.discarded.write_text(json.dumps(discarded, indent=1) + "\n")

    n_lookups = sum(len(c["lookups"]) for c in cases)
    cmd = ["nice -n 10 python3 tests/differential/record_lookups.py"]
    for flag, value, default in (("--cases", args.cases, HERE / "cases.json"), ("--count", args.count, None),
                                 ("--extra", args.extra, 100), ("--extra-start-seed", args.extra_start_seed, 100001),
                                 ("--extra-profile", args.extra_profile, "wildcards"),
                                 ("--out", args.out, HERE / "lookups.json"), ("--passes", args.passes, 2),
                                 ("--depth-passes", args.depth_passes, 4), ("--verify-passes", args.verify_passes, 4),
                                 ("--timeout", args.timeout, 5.0), ("--max-failures", args.max_failures, 2),
                                 ("--min-lookups", args.min_lookups, 5)):
        if value != default:
            cmd.append(f"{flag} {value}")
    print(f"command: {' '.join(cmd)}")
    extra = [c for c in cases if c.get("profile")]
    print(f"{from_cases} cases of {args.cases.name} and {args.extra} extra ({args.extra_profile} profile, seeds "
          f"{args.extra_start_seed}..{args.extra_start_seed + args.extra - 1}) -> {len(cases)} cases "
          f"({len(cases) - len(extra)} + {len(extra)}), {n_lookups} lookups "
          f"({os.path.getsize(args.out) / 1e6:.2f} MB) in {time.monotonic() - t0:.0f}s")
    print("\n".join(summary(cases)))
    print(f"discarded cases: harness failures {stats['harness_dropped']}, too few stable lookups "
          f"{stats['too_few_lookups']}")
    print(f"dropped lookups: unstable {stats['unstable_lookups']} (+{stats['unstable_on_verification']} on "
          f"verification), harness failures {stats['harness_failed_lookups']}, timing errors "
          f"{stats['timing_errors']}, irreconcilable repeats {stats['irreconcilable_lookups']}; "
          f"worker restarts {stats['worker_restarts']}")
    print(f"SpiceDB streams of the recorded lookups: {stats['chosen_lookups_with_repeated_entries']} repeat an "
          f"identical entry ({stats['chosen_repeated_entries']} repeats), "
          f"{stats['chosen_lookups_with_ids_with_distinct_entries']} give one id distinct entries, "
          f"{stats['chosen_lookups_with_error_after_results']} fail after streaming results")
    slow = sorted((i for i in seconds if seconds[i] > 10), key=lambda i: -seconds[i])
    if slow:
        print("slowest cases: " + ", ".join(f"seed {sources[i]['seed']} ({seconds[i]:.0f}s)" for i in slow[:10]))
    for reason, k in collections.Counter(d["reason"].split("\n")[0][:160] for d in discarded).most_common(10):
        print(f"  {k} x {reason}")
    return 0


if __name__ == "__main__":
    record.bootstrap(__file__)
    sys.exit(main())
