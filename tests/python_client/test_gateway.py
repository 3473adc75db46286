"""Trellis's HTTP/JSON gateway against the official Python client's JSON.

Usage: python test_gateway.py GRPC_HOST:PORT HTTP_HOST:PORT PRESHARED_KEY

Every request body is `json_format.MessageToJson` of the official `authzed`
message, so the gateway must read the canonical protobuf JSON mapping. Every
response is parsed back with `json_format.Parse` (strict: unknown fields and
wrong types fail) and compared with the same call made over gRPC at the same
snapshot, printed by `json_format.MessageToDict`: the gateway's JSON must be
the canonical mapping of the same message (grpc-gateway also prints unset
messages as null; those are dropped before comparing). Exits non-zero on any
difference.
"""

import json
import sys
import urllib.error
import urllib.request

from authzed.api.v1 import (
    CheckPermissionRequest,
    CheckPermissionResponse,
    Consistency,
    ObjectReference,
    ReadRelationshipsRequest,
    ReadRelationshipsResponse,
    ReadSchemaRequest,
    ReadSchemaResponse,
    Relationship,
    RelationshipFilter,
    RelationshipUpdate,
    SubjectReference,
    WriteRelationshipsRequest,
    WriteRelationshipsResponse,
    WriteSchemaRequest,
    WriteSchemaResponse,
    ZedToken,
)
from google.protobuf import json_format, struct_pb2

try:
    from authzed.api.v1 import InsecureClient
except ImportError:  # older clients
    InsecureClient = None

SCHEMA = """
definition user {}

caveat on_weekday(day int) {
    day < 6
}

definition document {
    relation viewer: user | user with on_weekday
    permission view = viewer
}
"""


def drop_nulls(value):
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def canonical(message):
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


class Gateway:
    def __init__(self, addr, key):
        self.base = f"http://{addr}"
        self.key = key

    def post(self, path, message):
        body = json_format.MessageToJson(message).encode()
        request = urllib.request.Request(
            self.base + path,
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.read().decode()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{path}: HTTP {e.code}: {e.read().decode()}") from e

    def unary(self, path, message, response_type):
        text = self.post(path, message)
        parsed = json_format.Parse(text, response_type())  # strict
        return parsed, drop_nulls(json.loads(text))

    def stream(self, path, message, response_type):
        results = []
        for line in self.post(path, message).splitlines():
            envelope = json.loads(line)
            assert set(envelope) == {"result"}, line
            parsed = json_format.Parse(json.dumps(envelope["result"]), response_type())
            results.append((parsed, drop_nulls(envelope["result"])))
        return results


def same(label, http_json, grpc_message):
    want = canonical(grpc_message)
    assert http_json == want, f"{label}:\n gateway {http_json}\n    gRPC {want}"
    print(f"ok   {label}")


def main():
    grpc_addr, http_addr, key = sys.argv[1], sys.argv[2], sys.argv[3]
    client = InsecureClient(grpc_addr, key)
    gateway = Gateway(http_addr, key)

    written, written_json = gateway.unary(
        "/v1/schema/write", WriteSchemaRequest(schema=SCHEMA), WriteSchemaResponse
    )
    assert written.written_at.token, written_json
    print("ok   WriteSchema through the gateway")

    context = struct_pb2.Struct()
    context.update({"day": 3})
    from authzed.api.v1 import ContextualizedCaveat

    updates = WriteRelationshipsRequest(
        updates=[
            RelationshipUpdate(
                operation=RelationshipUpdate.Operation.OPERATION_TOUCH,
                relationship=Relationship(
                    resource=ObjectReference(object_type="document", object_id=doc),
                    relation="viewer",
                    subject=SubjectReference(object=ObjectReference(object_type="user", object_id=user)),
                    optional_caveat=caveat,
                ),
            )
            for doc, user, caveat in [
                ("readme", "emilia", None),
                ("plan", "emilia", ContextualizedCaveat(caveat_name="on_weekday", context=context)),
                ("plan", "beatrice", ContextualizedCaveat(caveat_name="on_weekday")),
            ]
        ]
    )
    wrote, _ = gateway.unary("/v1/relationships/write", updates, WriteRelationshipsResponse)
    snapshot = Consistency(at_exact_snapshot=ZedToken(token=wrote.written_at.token))
    print("ok   WriteRelationships through the gateway (caveat context as a Struct)")

    for doc, user in [("readme", "emilia"), ("plan", "beatrice"), ("readme", "beatrice")]:
        request = CheckPermissionRequest(
            consistency=snapshot,
            resource=ObjectReference(object_type="document", object_id=doc),
            permission="view",
            subject=SubjectReference(object=ObjectReference(object_type="user", object_id=user)),
        )
        _, http_json = gateway.unary("/v1/permissions/check", request, CheckPermissionResponse)
        same(f"CheckPermission {doc} {user}", http_json, client.CheckPermission(request))

    read = ReadRelationshipsRequest(
        consistency=snapshot, relationship_filter=RelationshipFilter(resource_type="document")
    )
    http_results = gateway.stream("/v1/relationships/read", read, ReadRelationshipsResponse)
    grpc_results = list(client.ReadRelationships(read))
    assert len(http_results) == len(grpc_results) == 3, (len(http_results), len(grpc_results))
    for i, ((_, http_json), grpc_message) in enumerate(zip(http_results, grpc_results)):
        same(f"ReadRelationships result {i} (NDJSON)", http_json, grpc_message)

    _, http_json = gateway.unary("/v1/schema/read", ReadSchemaRequest(), ReadSchemaResponse)
    same("ReadSchema", http_json, client.ReadSchema(ReadSchemaRequest()))
    print("gateway JSON matches the official client's canonical mapping")


if __name__ == "__main__":
    main()
