#!/usr/bin/env python3
"""ci.sh's verdict: reads the logs of the differential runs and fails on any disagreement that
known-differences.txt does not list.

    ci_report.py KNOWN_DIFFERENCES NAME LOG STATUS [NAME LOG STATUS ...]

NAME labels a run (checks, lookups), LOG is its output (compare.py or compare_lookups.py through
run.sh), STATUS its exit status. Prints per run the agreement and the unexpected disagreements
(with the end of the log when there are any), then `differential: N passed, M failed`, where
known differences count as passed. Exit status 1 on an unexpected disagreement or a run that did
not complete (no totals, or items that failed without a FAIL line: not run).
"""

from __future__ import annotations

import re
import sys

KINDS = ("check", "lr", "ls")
MAX_LISTED = 100  # unexpected disagreements named one by one (the log tail follows)


def known_differences(lines) -> set[tuple[str, str, str]]:
    """{(kind, seed, index)} from lines `[check|lr|ls] SEED INDEX  # why`; no kind means check."""
    out = set()
    for line in lines:
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] not in KINDS:
            words.insert(0, "check")
        if len(words) < 3 or not (words[1].isdigit() and words[2].isdigit()):
            raise ValueError(f"known differences: bad line {line.rstrip()!r}")
        out.add((words[0], words[1], words[2]))
    return out


def failures_of(log: str) -> list[tuple[str, str, str]]:
    """(kind, seed, index) of every `FAIL kind #index:` line, with the seed of the case above it."""
    seed, out = None, []
    for line in log.splitlines():
        m = re.match(r"=== case seed (\d+)", line)
        if m:
            seed = m.group(1)
        m = re.match(r"\s+FAIL (check|lr|ls) #(\d+):", line)
        if m:
            out.append((m.group(1), seed, m.group(2)))
    return out


def verdict(name: str, log: str, status: int, known: set) -> tuple[int, int, bool, list[str]]:
    """(passed, unexpected failures, run broken, lines to print) of one run."""
    totals = re.search(r"^(\d+) passed, (\d+) failed", log, re.M)
    if not totals:
        return 0, 0, True, [log[-4000:], f"{name}: the differential run did not complete"]
    agreement = re.search(r"agreement: ([\d.]+%)", log)
    failures = failures_of(log)
    unexpected = [f for f in failures if f not in known]
    passed, failed = int(totals.group(1)), int(totals.group(2))
    broken = failed > len(failures) or (status != 0 and not failures)  # failed without a FAIL line: not run
    lines = [f"{name}: SpiceDB agreement {agreement.group(1) if agreement else '?'}; "
             f"{len(failures) - len(unexpected)} known differences (known-differences.txt)"]
    lines += [f"unexpected disagreement: case seed {seed}, {kind} #{index}"
              for kind, seed, index in unexpected[:MAX_LISTED]]
    if len(unexpected) > MAX_LISTED:
        lines.append(f"... and {len(unexpected) - MAX_LISTED} more unexpected disagreements")
    if unexpected or broken:
        lines.append(log[-4000:])
    if broken:
        lines.append(f"{name}: {failed - len(failures)} items failed without a FAIL line (not run)")
    return passed + len(failures) - len(unexpected), len(unexpected), broken, lines


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        known = known_differences(f)
    runs = argv[1:]
    if not runs or len(runs) % 3:
        sys.exit("usage: ci_report.py KNOWN_DIFFERENCES NAME LOG STATUS [NAME LOG STATUS ...]")
    total_passed = total_failed = 0
    any_broken = False
    for i in range(0, len(runs), 3):
        name, path, status = runs[i], runs[i + 1], int(runs[i + 2])
        with open(path) as f:
            passed, failed, broken, lines = verdict(name, f.read(), status, known)
        print("\n".join(lines))
        total_passed += passed
        total_failed += failed
        any_broken = any_broken or broken
    print(f"differential: {total_passed} passed, {total_failed} failed")
    return 1 if total_failed or any_broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
