#!/usr/bin/env python3
"""A stand-in for `trellis serve` backed by real SpiceDB v1.54 (tests/oracle's embedded library).

It serves the authzed.api.v1 RPCs that compare.py and compare_lookups.py use (WriteSchema,
ReadSchema, WriteRelationships, DeleteRelationships, CheckPermission, and the server-streaming
LookupResources and LookupSubjects) plus grpc.health.v1.Health/Check, and forwards each request
unchanged to one embedded SpiceDB instance: unary RPCs through the FFI, streaming ones through the
instance's own gRPC channel (the only way the embedded library serves them), response by response.
Running the comparisons against it tests the differential harness itself (proto building,
comparison, clean-up, run.sh) end to end; agreement should be 100% apart from SpiceDB's own races
(see README.md).

    tests/differential/spicedb_shim.py serve --grpc-addr 127.0.0.1:50051 --grpc-preshared-key KEY
    TRELLIS_BIN=tests/differential/spicedb_shim.py tests/differential/run.sh

Needs `tests/oracle/setup.sh`. No memory watchdog here (unlike the oracle): GOMEMLIMIT only.
Unary errors carry SpiceDB's code and message but no ErrorInfo details (the FFI drops them);
streaming errors are passed on whole, details included.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "oracle"))

import oracle  # noqa: E402


def bootstrap() -> None:
    os.environ.setdefault("SPICEDB_LIBRARY_PATH", str(oracle.oracle_dir() / oracle.LIB_SUBPATH))
    os.environ.setdefault("GOMEMLIMIT", "2GiB")
    venv = oracle.oracle_dir() / "venv"
    py = venv / "bin" / "python"
    if Path(sys.prefix).resolve() != venv.resolve():
        if not py.exists():
            sys.exit(f"spicedb_shim.py: no oracle venv at {venv}; run tests/oracle/setup.sh first")
        os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])


def serve(addr: str, key: str) -> None:
    import grpc
    from authzed.api.v1 import permission_service_pb2 as ps
    from authzed.api.v1 import schema_service_pb2 as ss

    worker = oracle._Worker()  # the oracle's FFI wrapper (keeps SpiceDB's error text intact)
    worker.handle = worker.op_start({})["instance"]
    lock = threading.Lock()

    routes = {
        "/authzed.api.v1.SchemaService/WriteSchema":
            ("spicedb_schema_write_schema", ss.WriteSchemaRequest, ss.WriteSchemaResponse),
        "/authzed.api.v1.SchemaService/ReadSchema":
            ("spicedb_schema_read_schema", ss.ReadSchemaRequest, ss.ReadSchemaResponse),
        "/authzed.api.v1.PermissionsService/WriteRelationships":
            ("spicedb_permissions_write_relationships", ps.WriteRelationshipsRequest, ps.WriteRelationshipsResponse),
        "/authzed.api.v1.PermissionsService/DeleteRelationships":
            ("spicedb_permissions_delete_relationships", ps.DeleteRelationshipsRequest,
             ps.DeleteRelationshipsResponse),
        "/authzed.api.v1.PermissionsService/CheckPermission":
            ("spicedb_permissions_check_permission", ps.CheckPermissionRequest, ps.CheckPermissionResponse),
    }

    def forward(fn, resp_cls):
        def handler(request, context):
            if dict(context.invocation_metadata()).get("authorization") != f"Bearer {key}":
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid preshared key")
            with lock:
                resp, err = worker.ffi(fn, request, resp_cls)
            if err:
                code = getattr(grpc.StatusCode, err["code"], grpc.StatusCode.UNKNOWN)
                context.abort(code, err["message"])
            return resp
        return handler

    streams = {
        "/authzed.api.v1.PermissionsService/LookupResources": ("LookupResources", ps.LookupResourcesRequest,
                                                                ps.LookupResourcesResponse),
        "/authzed.api.v1.PermissionsService/LookupSubjects": ("LookupSubjects", ps.LookupSubjectsRequest,
                                                               ps.LookupSubjectsResponse),
    }

    def forward_stream(name):
        def handler(request, context):
            if dict(context.invocation_metadata()).get("authorization") != f"Bearer {key}":
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid preshared key")
            with lock:  # one SpiceDB call at a time, as for the unary ones
                call = getattr(worker.stubs[worker.handle], name)(request, timeout=context.time_remaining())
                try:
                    responses = list(call)
                except grpc.RpcError as e:
                    # pass the status on whole: code, message and ErrorInfo details
                    details = [(k, v) for k, v in (e.trailing_metadata() or ()) if k == "grpc-status-details-bin"]
                    if details:
                        context.set_trailing_metadata(details)
                    context.abort(e.code(), e.details())
            yield from responses
        return handler

    def health(request: bytes, context) -> bytes:
        return b"\x08\x01"  # HealthCheckResponse{status: SERVING}

    class Handler(grpc.GenericRpcHandler):
        def service(self, call_details):
            if call_details.method == "/grpc.health.v1.Health/Check":
                return grpc.unary_unary_rpc_method_handler(health, lambda b: b, lambda b: b)
            if call_details.method in streams:
                name, req_cls, resp_cls = streams[call_details.method]
                return grpc.unary_stream_rpc_method_handler(
                    forward_stream(name), req_cls.FromString, resp_cls.SerializeToString)
            route = routes.get(call_details.method)
            if route is None:
                return None  # UNIMPLEMENTED
            fn, req_cls, resp_cls = route
            return grpc.unary_unary_rpc_method_handler(
                forward(fn, resp_cls), req_cls.FromString, resp_cls.SerializeToString)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[Handler()])
    if server.add_insecure_port(addr) == 0:
        sys.exit(f"spicedb_shim.py: cannot listen on {addr}")
    server.start()
    print(f"spicedb_shim: serving SpiceDB v1.54 (embedded) on {addr}", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--grpc-addr", required=True)
    s.add_argument("--grpc-preshared-key", required=True)
    args = p.parse_args()
    serve(args.grpc_addr, args.grpc_preshared_key)
    return 0


if __name__ == "__main__":
    bootstrap()
    sys.exit(main())
