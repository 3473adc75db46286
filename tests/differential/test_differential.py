#!/usr/bin/env python3
"""Offline tests of the differential harness: the generator, and compare.py's parsing, proto
building and comparison. No server and no SpiceDB needed; the proto tests need the `authzed`
package (run with target/oracle/venv/bin/python or target/differential/venv/bin/python).

    target/oracle/venv/bin/python tests/differential/test_differential.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compare  # noqa: E402
import generate  # noqa: E402

try:
    import authzed.api.v1 as api  # noqa: F401

    HAVE_AUTHZED = True
except ImportError:
    HAVE_AUTHZED = False

CASES = HERE / "cases.json"


class GeneratorTest(unittest.TestCase):
    def test_deterministic(self):
        for seed in (1, 7, 123, 9999):
            self.assertEqual(json.dumps(generate.generate(seed)), json.dumps(generate.generate(seed)))

    def test_independent_of_hash_seed(self):
        outs = set()
        for hash_seed in ("1", "2"):
            outs.add(subprocess.run(
                [sys.executable, str(HERE / "generate.py"), "--seed", "40", "--count", "5"],
                env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"},
                capture_output=True, check=True, text=True).stdout)
        self.assertEqual(len(outs), 1)

    def test_shape(self):
        features = {k: 0 for k in ("->", ".any(", ".all(", " + ", " & ", " - ", "(", "nil", ":*", "#", "with ")}
        for seed in range(1, 301):
            case = generate.generate(seed)
            defs = re.findall(r"^definition (\w+)", case["schema"], re.M)
            self.assertTrue(2 <= len(defs) <= 4, defs)
            self.assertEqual(defs[0], "user")
            for name in re.findall(r"(?:relation|permission) (\w+)", case["schema"]):
                self.assertRegex(name, r"^[a-z][a-z0-9_]{1,62}[a-z0-9]$")
            self.assertLessEqual(len(case["relationships"]), 30)
            self.assertGreaterEqual(len(case["candidates"]), 20)
            self.assertTrue(20 <= case["target_checks"] <= 60)
            body = "\n".join(line for line in case["schema"].split("\n") if "permission" in line)
            rels = "\n".join(line for line in case["schema"].split("\n") if "relation" in line)
            for f in features:
                features[f] += f in (rels if f in (":*", "#", "with ") else body)
        for f, n in features.items():
            self.assertGreater(n, 10, f"feature {f!r} too rare: {n}")


class ParsingTest(unittest.TestCase):
    def test_definitions_of(self):
        schema = ("use expiration\n\ncaveat flag_set(flag bool) {\n\tflag\n}\n\ndefinition user {}\n\n"
                  "definition tenant/group {\n\trelation member: user\n}\n  definition doc{\n}\n")
        self.assertEqual(compare.definitions_of(schema), ["user", "tenant/group", "doc"])

    def test_check_text(self):
        self.assertEqual(compare.check_text({"resource": "doc:1", "permission": "view", "subject": "group:g#member",
                                             "context": {"b": 1, "a": True}}),
                         'doc:1#view@group:g#member with {"a": true, "b": 1}')


@unittest.skipUnless(HAVE_AUTHZED, "needs the authzed package")
class ProtoTest(unittest.TestCase):
    def test_plain_and_subject_set(self):
        r = compare.relationship_proto("document:d1#viewer@group:g1#member")
        self.assertEqual((r.resource.object_type, r.resource.object_id, r.relation), ("document", "d1", "viewer"))
        self.assertEqual((r.subject.object.object_type, r.subject.object.object_id, r.subject.optional_relation),
                         ("group", "g1", "member"))
        self.assertFalse(r.HasField("optional_caveat"))
        self.assertFalse(r.HasField("optional_expires_at"))
        r = compare.relationship_proto("document:d1#viewer@user:*")
        self.assertEqual((r.subject.object.object_id, r.subject.optional_relation), ("*", ""))
        r = compare.relationship_proto("document:d1#viewer@user:bob#...")
        self.assertEqual(r.subject.optional_relation, "")

    def test_caveat_and_expiration(self):
        r = compare.relationship_proto('doc:a#viewer@user:bob[under_limit:{"count":1,"limit":2}]')
        self.assertEqual(r.optional_caveat.caveat_name, "under_limit")
        self.assertEqual(dict(r.optional_caveat.context), {"count": 1.0, "limit": 2.0})
        r = compare.relationship_proto("doc:a#viewer@user:bob[flag_set]")
        self.assertTrue(r.HasField("optional_caveat"))
        self.assertEqual(r.optional_caveat.caveat_name, "flag_set")
        self.assertEqual(len(r.optional_caveat.context.fields), 0)
        r = compare.relationship_proto("doc:a#viewer@user:bob[expiration:2000-01-01T00:00:00Z]")
        self.assertEqual(r.optional_expires_at.seconds, 946684800)
        r = compare.relationship_proto('doc:a#viewer@user:bob[flag_set:{"flag":true}][expiration:2999-12-31T23:59:59Z]')
        self.assertTrue(r.optional_caveat.context["flag"])
        self.assertEqual(r.optional_expires_at.ToJsonString(), "2999-12-31T23:59:59Z")

    def test_write_requests_chunked_touch(self):
        rels = [f"doc:d{i}#viewer@user:u{i}" for i in range(2500)]
        reqs = compare.write_requests(rels)
        self.assertEqual([len(r.updates) for r in reqs], [1000, 1000, 500])
        self.assertTrue(all(u.operation == api.RelationshipUpdate.Operation.OPERATION_TOUCH
                            for r in reqs for u in r.updates))
        self.assertEqual(reqs[2].updates[-1].relationship.subject.object.object_id, "u2499")
        self.assertEqual(compare.write_requests([]), [])

    def test_check_request(self):
        req = compare.check_request({"resource": "doc:a", "permission": "view", "subject": "group:g#member",
                                     "context": {"count": 3}, "expected": "HAS_PERMISSION"})
        self.assertTrue(req.consistency.fully_consistent)
        self.assertEqual((req.resource.object_type, req.resource.object_id, req.permission), ("doc", "a", "view"))
        self.assertEqual(req.subject.optional_relation, "member")
        self.assertEqual(req.context["count"], 3)
        req = compare.check_request({"resource": "doc:a", "permission": "view", "subject": "user:*"})
        self.assertFalse(req.HasField("context"))
        self.assertEqual(req.subject.object.object_id, "*")

    def test_delete_request(self):
        req = compare.delete_request("document")
        self.assertEqual(req.relationship_filter.resource_type, "document")
        self.assertEqual(req.relationship_filter.optional_resource_id, "")

    def test_answer_of_response(self):
        resp = api.CheckPermissionResponse(
            permissionship=api.CheckPermissionResponse.Permissionship.PERMISSIONSHIP_CONDITIONAL_PERMISSION)
        resp.partial_caveat_info.missing_required_context.extend(["flag", "count"])
        self.assertEqual(compare.answer_of_response(resp),
                         {"permissionship": "CONDITIONAL_PERMISSION", "missing_context": ["count", "flag"]})
        resp = api.CheckPermissionResponse(
            permissionship=api.CheckPermissionResponse.Permissionship.PERMISSIONSHIP_HAS_PERMISSION)
        self.assertEqual(compare.answer_of_response(resp), {"permissionship": "HAS_PERMISSION"})


class CompareTest(unittest.TestCase):
    depth = {"error": {"code": "FAILED_PRECONDITION", "message": "max depth exceeded: ..."}}

    def test_permissionship(self):
        chk = {"expected": "HAS_PERMISSION"}
        self.assertEqual(compare.compare(chk, {"permissionship": "HAS_PERMISSION"}), (True, None))
        self.assertFalse(compare.compare(chk, {"permissionship": "NO_PERMISSION"})[0])
        self.assertFalse(compare.compare(chk, self.depth)[0])

    def test_conditional_missing_context(self):
        chk = {"expected": "CONDITIONAL_PERMISSION", "missing_context": ["flag"]}
        self.assertTrue(compare.compare(chk, {"permissionship": "CONDITIONAL_PERMISSION",
                                              "missing_context": ["flag"]})[0])
        self.assertFalse(compare.compare(chk, {"permissionship": "CONDITIONAL_PERMISSION",
                                               "missing_context": ["count"]})[0])
        self.assertFalse(compare.compare(chk, {"permissionship": "CONDITIONAL_PERMISSION"})[0])

    def test_errors_compare_codes(self):
        chk = {"expected": self.depth}
        self.assertEqual(compare.compare(chk, self.depth), (True, None))
        other = {"error": {"code": "FAILED_PRECONDITION", "message": "something else"}}
        self.assertEqual(compare.compare(chk, other), (True, "message differs"))
        self.assertEqual(compare.compare(chk, other, strict_messages=True), (False, "message differs"))
        self.assertFalse(compare.compare(chk, {"error": {"code": "RESOURCE_EXHAUSTED", "message": ""}})[0])
        self.assertFalse(compare.compare(chk, {"permissionship": "NO_PERMISSION"})[0])
        self.assertEqual(compare.category(chk, {"permissionship": "NO_PERMISSION"}),
                         "expected FAILED_PRECONDITION (max depth), got NO_PERMISSION")


@unittest.skipUnless(HAVE_AUTHZED, "needs the authzed package")
class FakeServerTest(unittest.TestCase):
    """compare.main() against an in-process gRPC server with scripted answers."""

    def setUp(self):
        import time
        from concurrent import futures

        import grpc
        from authzed.api.v1 import permission_service_pb2 as ps
        from authzed.api.v1 import schema_service_pb2 as ss

        self.calls = []
        P = ps.CheckPermissionResponse.Permissionship

        def check(req, ctx):
            self.calls.append(("check", req.resource.object_id))
            rid = req.resource.object_id
            if rid == "slow":
                time.sleep(0.6)
            if rid == "deep":
                ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, "max depth exceeded: different words")
            if rid == "cond":
                resp = ps.CheckPermissionResponse(permissionship=P.PERMISSIONSHIP_CONDITIONAL_PERMISSION)
                resp.partial_caveat_info.missing_required_context.append("flag")
                return resp
            return ps.CheckPermissionResponse(
                permissionship=P.PERMISSIONSHIP_HAS_PERMISSION if rid == "yes" else P.PERMISSIONSHIP_NO_PERMISSION)

        def write_schema(req, ctx):
            self.calls.append(("schema", req.schema))
            if "reject" in req.schema:
                ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "nope")
            return ss.WriteSchemaResponse()

        def read_schema(req, ctx):
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no schema")

        def write(req, ctx):
            self.calls.append(("write", len(req.updates)))
            return ps.WriteRelationshipsResponse()

        def delete(req, ctx):
            self.calls.append(("delete", req.relationship_filter.resource_type))
            return ps.DeleteRelationshipsResponse()

        routes = {
            "/authzed.api.v1.PermissionsService/CheckPermission": (check, ps.CheckPermissionRequest),
            "/authzed.api.v1.SchemaService/WriteSchema": (write_schema, ss.WriteSchemaRequest),
            "/authzed.api.v1.SchemaService/ReadSchema": (read_schema, ss.ReadSchemaRequest),
            "/authzed.api.v1.PermissionsService/WriteRelationships": (write, ps.WriteRelationshipsRequest),
            "/authzed.api.v1.PermissionsService/DeleteRelationships": (delete, ps.DeleteRelationshipsRequest),
        }

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                if details.method not in routes:
                    return None
                fn, req_cls = routes[details.method]
                return grpc.unary_unary_rpc_method_handler(fn, req_cls.FromString, lambda m: m.SerializeToString())

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[Handler()])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def tearDown(self):
        self.server.stop(0)

    def run_compare(self, cases, *extra):
        import contextlib
        import io
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(cases, f)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = compare.main(["--endpoint", f"127.0.0.1:{self.port}", "--token", "k", "--cases", f.name, *extra])
        Path(f.name).unlink()
        return code, out.getvalue()

    def case(self, seed, checks, schema="definition user {}\ndefinition doc {\n\trelation viewer: user\n}\n"):
        return {"seed": seed, "schema": schema, "relationships": ["doc:yes#viewer@user:a"], "checks": [
            {"resource": f"doc:{rid}", "permission": "viewer", "subject": "user:a", "expected": exp}
            for rid, exp in checks]}

    def test_agreement_and_failures(self):
        depth = {"error": {"code": "FAILED_PRECONDITION", "message": "max depth exceeded: ..."}}
        cases = [self.case(1, [("yes", "HAS_PERMISSION"), ("no", "NO_PERMISSION"), ("deep", depth)]),
                 self.case(2, [("yes", "NO_PERMISSION"), ("deep", "HAS_PERMISSION")]),
                 self.case(3, [("no", "NO_PERMISSION")], schema="definition reject {}")]
        cases[0]["checks"].append({"resource": "doc:cond", "permission": "viewer", "subject": "user:a",
                                   "expected": "CONDITIONAL_PERMISSION", "missing_context": ["flag"]})
        code, out = self.run_compare(cases)
        self.assertEqual(code, 1)
        self.assertEqual(out.strip().split("\n")[-1], "4 passed, 3 failed")
        self.assertIn("agreement: 57.14%", out)
        self.assertIn("=== case seed 2", out)
        self.assertIn("  FAIL check #0: doc:yes#viewer@user:a", out)
        self.assertIn("  FAIL check #1: doc:deep#viewer@user:a", out)
        self.assertIn("=== case seed 3", out)
        self.assertIn("error messages differing from SpiceDB's (same code): 1", out)
        self.assertNotIn("=== case seed 1", out)
        # every case cleans up after itself, per definition
        self.assertEqual(sum(1 for c in self.calls if c == ("delete", "doc")), 2)
        self.assertEqual(sum(1 for c in self.calls if c == ("delete", "user")), 2)
        self.assertIn(("delete", "reject"), self.calls)
        self.assertIn(("write", 1), self.calls)
        code, out = self.run_compare(cases[:1], "--strict-messages")
        self.assertEqual(out.strip().split("\n")[-1], "3 passed, 1 failed")

    def test_timeouts_skip_rest_of_case(self):
        cases = [self.case(1, [("slow", "NO_PERMISSION")] * 5 + [("yes", "HAS_PERMISSION")]),
                 self.case(2, [("yes", "HAS_PERMISSION")])]
        code, out = self.run_compare(cases, "--timeout", "0.3")
        self.assertEqual(code, 1)
        self.assertEqual(out.strip().split("\n")[-1], "1 passed, 6 failed")
        self.assertIn("skipped: the server timed out on 3 checks in a row", out)
        self.assertEqual(sum(1 for c in self.calls if c == ("check", "slow")), 3)


@unittest.skipUnless(CASES.exists(), "no cases.json")
class CasesFileTest(unittest.TestCase):
    def test_cases_load_and_build(self):
        cases = compare.load_cases(CASES)
        self.assertGreaterEqual(len(cases), 500)
        self.assertEqual(len({c["seed"] for c in cases}), len(cases))
        for c in cases:
            self.assertTrue(compare.definitions_of(c["schema"]))
            self.assertGreaterEqual(len(c["checks"]), 1)
            if HAVE_AUTHZED:
                compare.write_requests(c["relationships"])
                for chk in c["checks"]:
                    compare.check_request(chk)

    def test_size(self):
        self.assertLess(CASES.stat().st_size, 5_000_000)


if __name__ == "__main__":
    unittest.main()
