#!/usr/bin/env python3
"""Run the recorded SpiceDB cases (cases.json) against a running Trellis server and compare.

    python3 tests/differential/compare.py --endpoint 127.0.0.1:PORT --token KEY [--cases FILE]

For each case, over the public authzed.api.v1 gRPC API (official PyPI `authzed` client, insecure
channel, `authorization: Bearer KEY`):
  1. WriteSchema;
  2. WriteRelationships, OPERATION_TOUCH, at most 1000 updates per call (caveats with their
     context and expirations are sent as written in the relationship strings);
  3. CheckPermission with `fully_consistent` for each check, compared with what SpiceDB 1.54
     answered: the permissionship (and, for CONDITIONAL_PERMISSION, the missing context names),
     or for an expected error the gRPC status code (messages are compared only with
     --strict-messages; differences are counted either way);
  4. DeleteRelationships for every definition of the schema, so cases do not interfere.
After 3 timed-out checks in a row the rest of the case is skipped (counted as failed); after 10
timed-out calls in a row, 3 UNAVAILABLE in a row, or UNAUTHENTICATED, the run aborts and every
check not run counts as failed. Before the first case, relationships left by an earlier run (of every definition in the current
schema) are deleted too.

Each disagreement is printed with the case's seed, schema, relationships, the check, the expected
and the received answer. The output ends with `agreement: X.XX%` and, as the very last line,
`N passed, M failed` (N and M count checks). Exit status: 0 when every check agrees, 1 otherwise,
2 on bad usage or an unreadable cases file.

compare_lookups.py runs the same loop (Runner, main) over lookups.json's LookupResources and
LookupSubjects items.

Other modes:  --health-check   probe grpc.health.v1.Health/Check once; exit 0 when SERVING
              --wait-health S  before running, wait up to S seconds for the server to be SERVING
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "oracle"))

# Text parsing (stdlib only) is shared with the oracle harness, which recorded the cases.
from oracle import FormatError, parse_object, parse_relationship, parse_subject  # noqa: E402

CASE_TIMEOUTS_IN_A_ROW = 3  # DEADLINE_EXCEEDED checks before the rest of a case is skipped
MAX_TIMEOUTS_IN_A_ROW = 10  # ... before the run is aborted (the server looks wedged)
WRITE_CHUNK = 1000  # SpiceDB's default --write-relationships-max-updates-per-call
PERMISSIONSHIPS = ("HAS_PERMISSION", "NO_PERMISSION", "CONDITIONAL_PERMISSION")
_DEFINITION = re.compile(r"^\s*definition\s+([a-z][a-z0-9_]*(?:/[a-z][a-z0-9_]*)*)\s*\{", re.M)


def _api():
    """The authzed package, imported late so that --help and the offline tests work without it."""
    try:
        import authzed.api.v1 as api  # noqa: F401
        import grpc  # noqa: F401
    except ImportError as e:
        sys.exit(f"compare.py: {e}; install the pinned client: pip install -r {HERE / 'requirements.txt'} "
                 f"(or use tests/differential/run.sh)")
    return api


# ---------------------------------------------------------------------------------------------
# cases and protos
# ---------------------------------------------------------------------------------------------


def load_cases(path: Path) -> list[dict]:
    cases = json.loads(path.read_text())
    if not isinstance(cases, list):
        raise ValueError("cases file must hold a JSON list")
    for c in cases:
        for key in ("seed", "schema", "relationships", "checks"):
            if key not in c:
                raise ValueError(f"case {c.get('seed', '?')} lacks `{key}`")
        for chk in c["checks"]:
            for key in ("resource", "permission", "subject", "expected"):
                if key not in chk:
                    raise ValueError(f"a check of case {c['seed']} lacks `{key}`")
            exp = chk["expected"]
            if not (exp in PERMISSIONSHIPS or (isinstance(exp, dict) and "code" in exp.get("error", {}))):
                raise ValueError(f"case {c['seed']}: bad expected value {exp!r}")
    return cases


def definitions_of(schema: str) -> list[str]:
    """Definition names of a schema text (the resource types whose relationships a case may write)."""
    return _DEFINITION.findall(schema)


def struct_of(ctx: dict | None):
    from google.protobuf.struct_pb2 import Struct

    s = Struct()
    if ctx:
        s.update(ctx)
    return s


def object_ref(obj: dict):
    api = _api()
    return api.ObjectReference(object_type=obj["type"], object_id=obj["id"])


def subject_ref(subj: dict):
    api = _api()
    return api.SubjectReference(object=object_ref(subj), optional_relation=subj.get("relation") or "")


def relationship_proto(text: str):
    """`res:id#rel@subj:id[#rel][caveat[:{json}]][expiration:RFC3339]` -> authzed.api.v1.Relationship."""
    from google.protobuf.timestamp_pb2 import Timestamp

    api = _api()
    r = parse_relationship(text)
    rel = api.Relationship(resource=object_ref(r["resource"]), relation=r["relation"], subject=subject_ref(r["subject"]))
    if "caveat" in r:
        cav = r["caveat"]
        rel.optional_caveat.CopyFrom(api.ContextualizedCaveat(caveat_name=cav["name"]))
        if cav.get("context"):
            rel.optional_caveat.context.CopyFrom(struct_of(cav["context"]))
    if "expiration" in r:
        ts = Timestamp()
        ts.FromJsonString(r["expiration"])
        rel.optional_expires_at.CopyFrom(ts)
    return rel


def write_requests(relationships: list[str]):
    """WriteRelationshipsRequests (TOUCH), at most WRITE_CHUNK updates each."""
    api = _api()
    touch = api.RelationshipUpdate.Operation.OPERATION_TOUCH
    updates = [api.RelationshipUpdate(operation=touch, relationship=relationship_proto(t)) for t in relationships]
    return [api.WriteRelationshipsRequest(updates=updates[i:i + WRITE_CHUNK]) for i in range(0, len(updates), WRITE_CHUNK)]


def check_request(check: dict):
    api = _api()
    req = api.CheckPermissionRequest(
        consistency=api.Consistency(fully_consistent=True),
        resource=object_ref(parse_object(check["resource"])),
        permission=check["permission"],
        subject=subject_ref(parse_subject(check["subject"])),
    )
    if check.get("context") is not None:
        req.context.CopyFrom(struct_of(check["context"]))
    return req


def delete_request(resource_type: str):
    api = _api()
    return api.DeleteRelationshipsRequest(relationship_filter=api.RelationshipFilter(resource_type=resource_type))


def check_text(check: dict) -> str:
    s = f"{check['resource']}#{check['permission']}@{check['subject']}"
    if check.get("context") is not None:
        s += " with " + json.dumps(check["context"], sort_keys=True)
    return s


# ---------------------------------------------------------------------------------------------
# answers
# ---------------------------------------------------------------------------------------------


def answer_of_response(resp) -> dict:
    """CheckPermissionResponse -> {"permissionship", "missing_context"?}."""
    api = _api()
    name = api.CheckPermissionResponse.Permissionship.Name(resp.permissionship)
    out = {"permissionship": name.split("PERMISSIONSHIP_", 1)[-1]}
    if resp.HasField("partial_caveat_info"):
        out["missing_context"] = sorted(resp.partial_caveat_info.missing_required_context)
    return out


def answer_of_error(err) -> dict:
    """grpc.RpcError -> {"error": {"code", "message"}}."""
    return {"error": {"code": err.code().name, "message": err.details() or ""}}


def describe(answer) -> str:
    """An expected value or a received answer, for printing."""
    if isinstance(answer, str):
        return answer
    if "error" in answer:
        return f"error {answer['error']['code']}: {answer['error'].get('message', '')}"
    s = answer["permissionship"]
    if answer.get("missing_context"):
        s += f" (missing context {', '.join(answer['missing_context'])})"
    return s


def compare(check: dict, got: dict, strict_messages: bool = False) -> tuple[bool, str | None]:
    """(agrees, note). `note` flags a difference that does not fail the check (error message text)."""
    exp = check["expected"]
    if isinstance(exp, dict):
        if "error" not in got:
            return False, None
        if got["error"]["code"] != exp["error"]["code"]:
            return False, None
        if got["error"]["message"] != exp["error"].get("message", got["error"]["message"]):
            return (not strict_messages), "message differs"
        return True, None
    if "error" in got or got["permissionship"] != exp:
        return False, None
    if exp == "CONDITIONAL_PERMISSION" and "missing_context" in check:
        if sorted(check["missing_context"]) != got.get("missing_context", []):
            return False, None
    return True, None


def category(check: dict, got: dict) -> str:
    """A short label of the kind of disagreement, for the summary."""
    def kind(a) -> str:
        if isinstance(a, str):
            return a
        if "error" in a:
            msg = a["error"].get("message", "")
            return f"{a['error']['code']}" + (" (max depth)" if "max depth" in msg else "")
        return a["permissionship"]
    return f"expected {kind(check['expected'])}, got {kind(got)}"


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


class ServerGone(Exception):
    pass


class Runner:
    """Replays cases against a server: per case, schema and relationships, then each item (here a
    CheckPermission; compare_lookups.LookupRunner overrides the item methods), then clean-up."""

    items_key = "checks"  # the list of a case this runner replays

    def __init__(self, client, timeout: float, strict_messages: bool, quiet: bool, out=None):
        self.client = client
        self.timeout = timeout
        self.strict_messages = strict_messages
        self.quiet = quiet
        self.out = out
        self.passed = 0
        self.failed = 0
        self.message_diffs = 0
        self.categories: collections.Counter = collections.Counter()
        self.unavailable = 0  # UNAVAILABLE answers in a row
        self.timeouts = 0  # DEADLINE_EXCEEDED answers in a row

    def p(self, *args) -> None:
        print(*args, file=self.out or sys.stdout, flush=True)

    def rpc(self, method, request, stream: bool = False):
        """One call (for a server-streaming method with `stream`, all its responses, as a list),
        counting UNAVAILABLE and DEADLINE_EXCEEDED answers in a row."""
        import grpc

        try:
            resp = method(request, timeout=self.timeout)
            if stream:
                resp = list(resp)  # the deadline covers the whole stream
            self.unavailable = self.timeouts = 0
            return resp
        except grpc.RpcError as e:
            code = e.code()
            self.unavailable = self.unavailable + 1 if code == grpc.StatusCode.UNAVAILABLE else 0
            self.timeouts = self.timeouts + 1 if code == grpc.StatusCode.DEADLINE_EXCEEDED else 0
            if code == grpc.StatusCode.UNAUTHENTICATED or self.unavailable >= 3:
                raise ServerGone(f"{code.name}: {e.details()}") from None
            if self.timeouts >= MAX_TIMEOUTS_IN_A_ROW:
                raise ServerGone(f"{self.timeouts} calls in a row timed out (--timeout {self.timeout:g}s)") from None
            raise

    def clean_slate(self) -> None:
        """Delete relationships of every definition in the server's current schema (left by an earlier run)."""
        import grpc

        api = _api()
        try:
            schema = self.rpc(self.client.ReadSchema, api.ReadSchemaRequest()).schema_text
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return  # no schema yet
            raise
        for t in definitions_of(schema):
            self.rpc(self.client.DeleteRelationships, delete_request(t))

    def header(self, case: dict, printed: list[bool]) -> None:
        if printed[0]:
            return
        printed[0] = True
        self.p(f"=== case seed {case['seed']}")
        if not self.quiet:
            self.p("schema:")
            for line in case["schema"].rstrip("\n").split("\n"):
                self.p("    " + line)
            self.p("relationships:")
            for r in case["relationships"]:
                self.p("    " + r)

    # -- one item: a check (LookupRunner overrides these) ---------------------------------

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Options of this kind of item only."""

    def configure(self, args: argparse.Namespace) -> None:
        """Takes the options of add_arguments."""

    def item_kind(self, item: dict) -> str:
        """The kind named in FAIL lines and known-differences.txt."""
        return "check"

    def item_text(self, item: dict) -> str:
        return check_text(item)

    def ask(self, item: dict) -> dict:
        """The server's answer to an item, or {"error": {...}}."""
        import grpc

        try:
            return answer_of_response(self.rpc(self.client.CheckPermission, check_request(item)))
        except grpc.RpcError as e:
            return answer_of_error(e)

    def judge(self, item: dict, got: dict) -> tuple[bool, str | None]:
        return compare(item, got, self.strict_messages)

    def category(self, item: dict, got: dict) -> str:
        return category(item, got)

    def explain(self, item: dict, got: dict) -> list[str]:
        """Lines under a FAIL line: what SpiceDB answered, what the server answered."""
        expected = item["expected"]
        if item.get("missing_context"):
            expected = {"permissionship": expected, "missing_context": item["missing_context"]}
        return [f"expected: {describe(expected)}", f"got:      {describe(got)}"]

    # -- cases ------------------------------------------------------------------------------

    def fail_line(self, n: int, item: dict) -> None:
        self.p(f"  FAIL {self.item_kind(item)} #{n}: {self.item_text(item)}")

    def fail_all(self, case: dict, what: str, printed: list[bool]) -> None:
        """Every item of the case fails (its schema or relationships could not be written)."""
        self.header(case, printed)
        self.p(f"  {what}")
        for n, item in enumerate(case[self.items_key]):
            self.fail_line(n, item)
            self.p(f"       not run: {what.split(':')[0]}")
        self.failed += len(case[self.items_key])
        self.categories[what.split(":")[0]] += len(case[self.items_key])

    def run_case(self, case: dict) -> None:
        import grpc

        api = _api()
        printed = [False]
        try:
            try:
                self.rpc(self.client.WriteSchema, api.WriteSchemaRequest(schema=case["schema"]))
            except grpc.RpcError as e:
                self.fail_all(case, f"WriteSchema failed: {e.code().name}: {e.details()}", printed)
                return
            for i, req in enumerate(write_requests(case["relationships"])):
                try:
                    self.rpc(self.client.WriteRelationships, req)
                except grpc.RpcError as e:
                    self.fail_all(case, f"WriteRelationships (chunk {i}) failed: {e.code().name}: {e.details()}",
                                  printed)
                    return
            for n, item in enumerate(case[self.items_key]):
                if self.timeouts >= CASE_TIMEOUTS_IN_A_ROW:
                    # a server stuck on this case (say, exploring cyclic data): skip its other items
                    self.failed += 1
                    self.categories[f"skipped after {CASE_TIMEOUTS_IN_A_ROW} timeouts in a row"] += 1
                    self.header(case, printed)
                    self.fail_line(n, item)
                    self.p(f"       skipped: the server timed out on {self.timeouts} requests in a row")
                    continue
                got = self.ask(item)
                ok, note = self.judge(item, got)
                if note:
                    self.message_diffs += 1
                if ok:
                    self.passed += 1
                    continue
                self.failed += 1
                self.categories[self.category(item, got)] += 1
                self.header(case, printed)
                self.fail_line(n, item)
                for line in self.explain(item, got):
                    self.p("       " + line)
        finally:
            self.cleanup(case)

    def cleanup(self, case: dict) -> None:
        import grpc

        for t in definitions_of(case["schema"]):
            try:
                self.rpc(self.client.DeleteRelationships, delete_request(t))
            except grpc.RpcError as e:
                # a definition the server did not accept has nothing to delete
                if e.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT,
                                    grpc.StatusCode.NOT_FOUND):
                    self.p(f"  warning: DeleteRelationships({t}) after case {case['seed']}: "
                           f"{e.code().name}: {e.details()}")


def health_status(endpoint: str, token: str, timeout: float) -> str:
    """grpc.health.v1.Health/Check for the whole server ("" service) -> status name or an error text.

    Hand-encoded: the request is empty, the response is field 1 (enum ServingStatus) as a varint,
    so grpcio-health-checking is not needed.
    """
    import grpc

    names = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
    with grpc.insecure_channel(endpoint) as ch:
        call = ch.unary_unary("/grpc.health.v1.Health/Check",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            raw = call(b"", timeout=timeout, metadata=[("authorization", f"Bearer {token}")])
        except grpc.RpcError as e:
            return f"{e.code().name}: {e.details()}"
    status = 0
    if len(raw) >= 2 and raw[0] == 0x08:
        status = raw[1]
    return names.get(status, f"status {status}")


def main(argv: list[str] | None = None, runner_cls=Runner, load=load_cases, default_cases: Path = HERE / "cases.json",
         what: str = "CheckPermission") -> int:
    """The command line; compare_lookups.py runs it with its own runner, loader and cases file."""
    p = argparse.ArgumentParser(description=f"Compare a Trellis server's {what} answers with SpiceDB's.")
    p.add_argument("--endpoint", required=True, help="host:port of the Trellis gRPC server")
    p.add_argument("--token", required=True, help="preshared key (sent as `authorization: Bearer KEY`)")
    p.add_argument("--cases", type=Path, default=default_cases)
    p.add_argument("--seed", type=int, action="append", help="run only this case (repeatable)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per RPC (default 30)")
    p.add_argument("--strict-messages", action="store_true", help="error messages must match SpiceDB's too")
    p.add_argument("--quiet", action="store_true", help="do not print schemas and relationships of failing cases")
    p.add_argument("--max-failed-cases", type=int, default=0,
                   help="stop after this many cases with failures (0: run everything)")
    p.add_argument("--health-check", action="store_true", help="probe gRPC health once; exit 0 if SERVING")
    p.add_argument("--wait-health", type=float, default=0.0, help="wait up to this many seconds for SERVING")
    runner_cls.add_arguments(p)
    args = p.parse_args(argv)

    _api()
    if args.health_check:
        status = health_status(args.endpoint, args.token, timeout=2.0)
        print(status)
        return 0 if status == "SERVING" else 1
    if args.wait_health > 0:
        deadline = time.monotonic() + args.wait_health
        while (status := health_status(args.endpoint, args.token, timeout=2.0)) != "SERVING":
            if time.monotonic() > deadline:
                print(f"compare.py: server at {args.endpoint} not SERVING after {args.wait_health:.0f}s: {status}",
                      file=sys.stderr)
                return 2
            time.sleep(0.2)

    try:
        cases = load(args.cases)
    except (OSError, ValueError, FormatError) as e:
        print(f"compare.py: cannot load {args.cases}: {e}", file=sys.stderr)
        return 2
    if args.seed:
        wanted = set(args.seed)
        cases = [c for c in cases if c["seed"] in wanted]

    api = _api()
    client = api.InsecureClient(args.endpoint, args.token)
    runner = runner_cls(client, args.timeout, args.strict_messages, args.quiet)
    runner.configure(args)
    total = sum(len(c[runner.items_key]) for c in cases)
    started = time.monotonic()
    failed_cases = 0
    try:
        runner.clean_slate()
        for case in cases:
            before = runner.failed
            runner.run_case(case)
            if runner.failed > before:
                failed_cases += 1
                if args.max_failed_cases and failed_cases >= args.max_failed_cases:
                    print(f"stopping after {failed_cases} failing cases (--max-failed-cases)")
                    break
    except ServerGone as e:
        print(f"server unavailable, aborting: {e}")
    except Exception as e:  # an unexpected RPC error outside a check (clean-up, ReadSchema)
        import grpc

        if not isinstance(e, grpc.RpcError):
            raise
        print(f"aborting on unexpected RPC error: {e.code().name}: {e.details()}")
    not_run = total - runner.passed - runner.failed
    runner.failed += not_run  # items never run (aborted) count as failed

    if runner.categories or not_run:
        print("disagreements by kind:")
        for cat, k in runner.categories.most_common():
            print(f"  {k:6d}  {cat}")
        if not_run:
            print(f"  {not_run:6d}  not run (aborted)")
    if runner.message_diffs:
        print(f"error messages differing from SpiceDB's (same code): {runner.message_diffs}"
              + ("" if args.strict_messages else " (not counted as failures; see --strict-messages)"))
    print(f"{len(cases)} cases, {failed_cases} with failures, {time.monotonic() - started:.1f}s")
    agreement = 100.0 * runner.passed / total if total else 100.0
    print(f"agreement: {agreement:.2f}%")
    print(f"{runner.passed} passed, {runner.failed} failed")
    return 1 if runner.failed else 0


if __name__ == "__main__":
    sys.exit(main())
