#!/usr/bin/env python3
"""Run the recorded SpiceDB lookups (lookups.json) against a running Trellis server and compare.

    python3 tests/differential/compare_lookups.py --endpoint 127.0.0.1:PORT --token KEY [--cases FILE]

The sibling of compare.py (same options, same run: schema, relationships, each item with
`fully_consistent`, clean-up; same output, ending with `agreement: X.XX%` and `N passed, M failed`,
here counting lookups). Each item is a LookupResources (`lr`) or LookupSubjects (`ls`) request;
its stream is compared with SpiceDB 1.54's recorded answer:

  * as sets: SpiceDB streams results in traversal order, and sometimes streams one id more
    than once (identical LookupSubjects subjects from two paths; in LookupResources an id both
    CONDITIONAL and HAS). The recorded answer keeps SpiceDB's distinct entries; they are merged
    per id (HAS without exclusions wins, conditional entries unite their missing context) and
    the server's stream must hold exactly those ids with the same permissionship, missing
    context and, for a wildcard subject, the same excluded subjects;
  * the server's stream must not name an id twice;
  * the response fields SpiceDB always fills must be there: `looked_up_at` on every response,
    `after_result_cursor` on every LookupResources response (Trellis also sets it on
    LookupSubjects responses, which it pages; SpiceDB never does, and neither is a failure); and
    LookupSubjects' deprecated mirrors (subject_object_id, permissionship, partial_caveat_info,
    excluded_subject_ids) must repeat `subject` and `excluded_subjects`. SpiceDB's deprecated
    `excluded_subject_ids` also lists exclusions whose caveat evaluated to false, which
    `excluded_subjects` omits; the recordings keep that quirk (an entry's
    `deprecated_excluded_subject_ids`), but it is not compared: Trellis mirrors the real exclusions;
  * an expected error must come back with the same gRPC code (a partial stream before it does
    not matter); a differing message or ErrorInfo reason is counted, and fails only with
    --strict-messages.
A disagreement prints `  FAIL lr #I: ...` or `  FAIL ls #I: ...` (I: the lookup's index in its
case) with the expected and received answers and which ids differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compare  # noqa: E402
from compare import parse_object, parse_subject  # noqa: E402

KINDS = ("lr", "ls")
_REQUIRED = {"lr": ("resource_type", "permission", "subject"), "ls": ("resource", "permission", "subject_type")}


class Irreconcilable(ValueError):
    """Entries for one id that no single entry can stand for (wildcards with different exclusions)."""


# ---------------------------------------------------------------------------------------------
# answers as data (stdlib only: record_lookups.py uses these too)
# ---------------------------------------------------------------------------------------------


def canonical_entry(e: dict) -> dict:
    """{"id", "permissionship", "missing_context"?, "excluded"?} with sorted lists and no empty
    ones (a recorded `deprecated_excluded_subject_ids` quirk is left out)."""
    out = {"id": e["id"], "permissionship": e["permissionship"]}
    if e.get("missing_context"):
        out["missing_context"] = sorted(e["missing_context"])
    if e.get("excluded"):
        out["excluded"] = sorted((canonical_entry(x) for x in e["excluded"]), key=_entry_key)
    return out


def _entry_key(e: dict) -> tuple:
    return (e["id"], json.dumps(e, sort_keys=True))


def distinct_entries(entries: list[dict]) -> tuple[list[dict], int]:
    """(the distinct canonical entries sorted by id, how many identical repeats were dropped)."""
    seen: dict[str, dict] = {}
    for e in entries:
        c = canonical_entry(e)
        seen.setdefault(json.dumps(c, sort_keys=True), c)
    return sorted(seen.values(), key=_entry_key), len(entries) - len(seen)


def merge_by_id(entries: list[dict]) -> dict[str, dict]:
    """id -> the one entry that stands for all of that id's entries.

    An unconditional entry without exclusions covers every other (HAS + anything = HAS); entries
    that are all conditional without exclusions unite their missing context (either path may
    hold). Anything else (a wildcard with differing exclusions) raises Irreconcilable.
    """
    by_id: dict[str, list[dict]] = {}
    for e in entries:
        by_id.setdefault(e["id"], []).append(canonical_entry(e))
    out: dict[str, dict] = {}
    for i, es in by_id.items():
        distinct = {json.dumps(e, sort_keys=True): e for e in es}
        covering = {k: e for k, e in distinct.items()
                    if e["permissionship"] == "HAS_PERMISSION" and "excluded" not in e}
        if len(distinct) == 1:
            out[i] = es[0]
        elif len(covering) == 1:
            out[i] = next(iter(covering.values()))
        elif all(e["permissionship"] == "CONDITIONAL_PERMISSION"
                 and set(e) <= {"id", "permissionship", "missing_context"} for e in es):
            missing = sorted({m for e in es for m in e.get("missing_context", [])})
            out[i] = canonical_entry({"id": i, "permissionship": "CONDITIONAL_PERMISSION", "missing_context": missing})
        else:
            raise Irreconcilable(f"entries for `{i}` cannot be merged: {sorted(distinct)}")
    return out


def merged_for_display(entries: list[dict]) -> dict[str, dict]:
    """merge_by_id, or for a stream that cannot be merged (it repeats ids anyway) the last entry per id."""
    try:
        return merge_by_id(entries)
    except Irreconcilable:
        return {e["id"]: canonical_entry(e) for e in entries}


def lookup_text(q: dict) -> str:
    """`lr document:?#view@user:bob` / `ls document:d1#view@group:?#member` (`?`: what is looked up)."""
    if q["kind"] == "lr":
        s = f"lr {q['resource_type']}:?#{q['permission']}@{q['subject']}"
    else:
        s = f"ls {q['resource']}#{q['permission']}@{q['subject_type']}:?"
        if q.get("subject_relation"):
            s += "#" + q["subject_relation"]
    if q.get("context") is not None:
        s += " with " + json.dumps(q["context"], sort_keys=True)
    return s


def describe_entry(e: dict) -> str:
    s = e["id"]
    if e["permissionship"] != "HAS_PERMISSION":
        s += " " + e["permissionship"].split("_", 1)[0].lower()
    if e.get("missing_context"):
        s += f" (missing {', '.join(e['missing_context'])})"
    if e.get("excluded"):
        s += " - [" + ", ".join(describe_entry(x) for x in e["excluded"]) + "]"
    if "deprecated_excluded_subject_ids" in e:
        s += f" (deprecated excluded_subject_ids [{', '.join(e['deprecated_excluded_subject_ids'])}])"
    return s


def describe_answer(answer: dict) -> str:
    if "error" in answer:
        e = answer["error"]
        return f"error {e['code']}" + (f" [{e['reason']}]" if e.get("reason") else "") + f": {e.get('message', '')}"
    results = sorted(answer["results"], key=_entry_key)
    return "{" + ", ".join(describe_entry(e) for e in results) + "}" if results else "{} (nothing)"


def duplicates(answer: dict) -> list[str]:
    """Ids named more than once in a received stream."""
    ids = [e["id"] for e in answer.get("results", [])]
    return sorted({i for i in ids if ids.count(i) > 1})


def compare_lookup(q: dict, got: dict, strict_messages: bool = False,
                   allow_duplicates: bool = False) -> tuple[bool, str | None]:
    """(agrees, note); `note` flags a difference that does not fail the lookup (error text).
    `allow_duplicates` merges a stream's repeated ids as SpiceDB's own are merged (to check the
    harness against SpiceDB, which repeats ids)."""
    exp = q["expected"]
    if "error" in exp:
        if "error" not in got or got["error"]["code"] != exp["error"]["code"]:
            return False, None
        for field in ("message", "reason"):
            if field in exp["error"] and got["error"].get(field) != exp["error"][field]:
                return (not strict_messages), f"{field} differs"
        return True, None
    if "error" in got or got.get("shape"):
        return False, None
    if duplicates(got):
        if not allow_duplicates:
            return False, None
        try:
            merge_by_id(got["results"])
        except Irreconcilable:
            return False, None
    return merge_by_id(exp["results"]) == merge_by_id(got["results"]), None


def differences(q: dict, got: dict) -> list[str]:
    """Which ids differ between the expected (merged) and the received results."""
    if "error" in q["expected"] or "error" in got:
        return []
    lines = []
    if duplicates(got):
        lines.append("duplicates in the stream: " + ", ".join(duplicates(got)))
    lines += got.get("shape", [])
    exp, have = merge_by_id(q["expected"]["results"]), merged_for_display(got["results"])
    missing = [describe_entry(exp[i]) for i in sorted(exp) if i not in have]
    extra = [describe_entry(have[i]) for i in sorted(have) if i not in exp]
    changed = [f"{describe_entry(exp[i])} -> {describe_entry(have[i])}" for i in sorted(exp)
               if i in have and exp[i] != have[i]]
    for label, items in (("missing", missing), ("extra", extra), ("different", changed)):
        if items:
            lines.append(f"{label}: " + ", ".join(items))
    return lines


def lookup_category(q: dict, got: dict) -> str:
    """A short label of the kind of disagreement, for the summary."""
    def kind(a: dict) -> str:
        if "error" in a:
            return a["error"]["code"] + (" (max depth)" if "max depth" in a["error"].get("message", "") else "")
        return "results"

    exp = q["expected"]
    if "error" in exp or "error" in got:
        return f"{q['kind']}: expected {kind(exp)}, got {kind(got)}"
    if duplicates(got):
        return f"{q['kind']}: duplicate ids in the stream"
    if got.get("shape"):
        return f"{q['kind']}: response fields missing or not mirrored"
    e, h = merge_by_id(exp["results"]), merged_for_display(got["results"])
    parts = [label for label, hit in (("missing ids", set(e) - set(h)), ("extra ids", set(h) - set(e)),
                                      ("different entries", [i for i in e if i in h and e[i] != h[i]])) if hit]
    return f"{q['kind']}: " + " and ".join(parts)


def load_lookup_cases(path: Path) -> list[dict]:
    cases = json.loads(path.read_text())
    if not isinstance(cases, list):
        raise ValueError("lookups file must hold a JSON list")
    for c in cases:
        for key in ("seed", "schema", "relationships", "lookups"):
            if key not in c:
                raise ValueError(f"case {c.get('seed', '?')} lacks `{key}`")
        for q in c["lookups"]:
            if q.get("kind") not in KINDS:
                raise ValueError(f"case {c['seed']}: bad lookup kind {q.get('kind')!r}")
            for key in _REQUIRED[q["kind"]] + ("expected",):
                if key not in q:
                    raise ValueError(f"a lookup of case {c['seed']} lacks `{key}`")
            exp = q["expected"]
            if not (isinstance(exp, dict) and ("results" in exp or "code" in exp.get("error", {}))):
                raise ValueError(f"case {c['seed']}: bad expected value {exp!r}")
            if "results" in exp:
                merge_by_id(exp["results"])  # raises on entries the comparison cannot use
    return cases


# ---------------------------------------------------------------------------------------------
# protos (need the authzed package)
# ---------------------------------------------------------------------------------------------


def lookup_resources_request(q: dict):
    api = compare._api()
    req = api.LookupResourcesRequest(
        consistency=api.Consistency(fully_consistent=True),
        resource_object_type=q["resource_type"],
        permission=q["permission"],
        subject=compare.subject_ref(parse_subject(q["subject"])),
    )
    if q.get("context") is not None:
        req.context.CopyFrom(compare.struct_of(q["context"]))
    return req


def lookup_subjects_request(q: dict):
    """Never with optional_concrete_limit: SpiceDB 1.54 answers that with UNIMPLEMENTED."""
    api = compare._api()
    req = api.LookupSubjectsRequest(
        consistency=api.Consistency(fully_consistent=True),
        resource=compare.object_ref(parse_object(q["resource"])),
        permission=q["permission"],
        subject_object_type=q["subject_type"],
        optional_subject_relation=q.get("subject_relation") or "",
    )
    if q.get("context") is not None:
        req.context.CopyFrom(compare.struct_of(q["context"]))
    return req


def _permissionship(value) -> str:
    from authzed.api.v1.permission_service_pb2 import LookupPermissionship

    return LookupPermissionship.Name(value).split("PERMISSIONSHIP_", 1)[-1]


def _resolved(permissionship, partial_caveat_info, has_partial: bool, object_id: str) -> dict:
    e = {"id": object_id, "permissionship": _permissionship(permissionship)}
    if has_partial:
        e["missing_context"] = sorted(partial_caveat_info.missing_required_context)
    return e


def _with_shape(results: list[dict], problems: dict[str, list[str]]) -> dict:
    """{"results", "shape"?: ["<problem>: <ids>", ...]}."""
    out: dict = {"results": results}
    shape = [f"{problem}: {', '.join(ids)}" for problem, ids in problems.items() if ids]
    if shape:
        out["shape"] = shape
    return out


def answer_of_lr_stream(responses) -> dict:
    """LookupResourcesResponses -> {"results": [entries in stream order], "shape"?: [problems]}."""
    results: list[dict] = []
    problems: dict[str, list[str]] = {"no looked_up_at": [], "no after_result_cursor": []}
    for r in responses:
        results.append(canonical_entry(_resolved(r.permissionship, r.partial_caveat_info,
                                                 r.HasField("partial_caveat_info"), r.resource_object_id)))
        if not r.looked_up_at.token:
            problems["no looked_up_at"].append(r.resource_object_id)
        if not r.after_result_cursor.token:
            problems["no after_result_cursor"].append(r.resource_object_id)
    return _with_shape(results, problems)


def answer_of_ls_stream(responses) -> dict:
    """LookupSubjectsResponses -> {"results": [entries in stream order], "shape"?: [problems]}."""
    results: list[dict] = []
    problems: dict[str, list[str]] = {"no looked_up_at": [], "deprecated fields do not repeat `subject`": []}
    for r in responses:
        s = r.subject
        e = _resolved(s.permissionship, s.partial_caveat_info, s.HasField("partial_caveat_info"), s.subject_object_id)
        if r.excluded_subjects:
            e["excluded"] = [_resolved(x.permissionship, x.partial_caveat_info, x.HasField("partial_caveat_info"),
                                       x.subject_object_id) for x in r.excluded_subjects]
        results.append(canonical_entry(e))
        if not r.looked_up_at.token:
            problems["no looked_up_at"].append(s.subject_object_id)
        if not (r.subject_object_id == s.subject_object_id and r.permissionship == s.permissionship
                and r.HasField("partial_caveat_info") == s.HasField("partial_caveat_info")
                and r.partial_caveat_info == s.partial_caveat_info
                and sorted(r.excluded_subject_ids) == sorted(x.subject_object_id for x in r.excluded_subjects)):
            problems["deprecated fields do not repeat `subject`"].append(s.subject_object_id)
    return _with_shape(results, problems)


def answer_of_stream_error(err) -> dict:
    """grpc.RpcError -> {"error": {"code", "message", "reason"?}} (reason from ErrorInfo)."""
    out = compare.answer_of_error(err)
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            from google.rpc import error_details_pb2, status_pb2

            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    out["error"]["reason"] = info.reason
    return out


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


class LookupRunner(compare.Runner):
    """compare.Runner with LookupResources / LookupSubjects items."""

    items_key = "lookups"
    allow_duplicates = False

    @staticmethod
    def add_arguments(parser) -> None:
        parser.add_argument("--allow-duplicates", action="store_true",
                            help="accept ids repeated in one stream (SpiceDB repeats some; for runs against "
                                 "spicedb_shim.py)")

    def configure(self, args) -> None:
        self.allow_duplicates = args.allow_duplicates

    def item_kind(self, item: dict) -> str:
        return item["kind"]

    def item_text(self, item: dict) -> str:
        return lookup_text(item)

    def ask(self, item: dict) -> dict:
        import grpc

        try:
            if item["kind"] == "lr":
                return answer_of_lr_stream(self.rpc(self.client.LookupResources, lookup_resources_request(item),
                                                    stream=True))
            return answer_of_ls_stream(self.rpc(self.client.LookupSubjects, lookup_subjects_request(item),
                                                stream=True))
        except grpc.RpcError as e:
            return answer_of_stream_error(e)

    def judge(self, item: dict, got: dict) -> tuple[bool, str | None]:
        return compare_lookup(item, got, self.strict_messages, self.allow_duplicates)

    def category(self, item: dict, got: dict) -> str:
        return lookup_category(item, got)

    def explain(self, item: dict, got: dict) -> list[str]:
        return ([f"expected: {describe_answer(item['expected'])}", f"got:      {describe_answer(got)}"]
                + differences(item, got))


def main(argv: list[str] | None = None) -> int:
    return compare.main(argv, runner_cls=LookupRunner, load=load_lookup_cases, default_cases=HERE / "lookups.json",
                        what="LookupResources/LookupSubjects")


if __name__ == "__main__":
    sys.exit(main())
