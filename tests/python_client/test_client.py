"""The official SpiceDB Python client (PyPI `authzed`) against a running Trellis.

Usage: python test_client.py HOST:PORT PRESHARED_KEY

Covers: schema write/read, write, check, bulk check, LookupResources (server
stream, paged by cursor), LookupSubjects (wildcard with exclusions), read (server stream),
delete, Watch (server stream, resumed from a token), bulk import (client
stream) and export (server stream, paged by cursor), error cases, schema reflection and relationship
counters. Prints one line per case and a closing
`N passed, M failed` line; exits non-zero on any failure.
"""

import sys
import traceback

import grpc
from authzed.api.v1 import (
    CheckBulkPermissionsRequest,
    CheckBulkPermissionsRequestItem,
    CheckPermissionRequest,
    CheckPermissionResponse,
    Consistency,
    DeleteRelationshipsRequest,
    ObjectReference,
    ReadRelationshipsRequest,
    ReadSchemaRequest,
    Relationship,
    RelationshipFilter,
    RelationshipUpdate,
    SubjectReference,
    WriteRelationshipsRequest,
    WatchRequest,
    WriteSchemaRequest,
)
from authzed.api.v1.permission_service_pb2 import (
    ExportBulkRelationshipsRequest,
    ImportBulkRelationshipsRequest,
)
from authzed.api.v1.watch_service_pb2 import WatchKind
from google.protobuf import struct_pb2

try:
    from authzed.api.v1 import InsecureClient
except ImportError:  # older clients
    InsecureClient = None

SCHEMA = """
definition user {}

definition group {
    relation member: user | group#member
}

definition document {
    relation owner: user
    relation viewer: user | group#member | user:*
    relation banned: user
    permission edit = owner
    permission view = (viewer + edit) - banned
}
"""


def client_for(endpoint, key):
    if InsecureClient is not None:
        return InsecureClient(endpoint, key)
    from authzed.api.v1 import Client
    from grpcutil import insecure_bearer_token_credentials

    return Client(endpoint, insecure_bearer_token_credentials(key))


def obj(t, i):
    return ObjectReference(object_type=t, object_id=i)


def subj(t, i, rel=""):
    return SubjectReference(object=obj(t, i), optional_relation=rel)


def touch(resource, relation, subject):
    return RelationshipUpdate(
        operation=RelationshipUpdate.Operation.OPERATION_TOUCH,
        relationship=Relationship(resource=resource, relation=relation, subject=subject),
    )


FULL = Consistency(fully_consistent=True)


def check(client, resource, permission, subject):
    return client.CheckPermission(
        CheckPermissionRequest(consistency=FULL, resource=resource, permission=permission, subject=subject)
    ).permissionship


def expect_error(code, fn):
    try:
        fn()
    except grpc.RpcError as e:
        assert e.code() == code, f"expected {code}, got {e.code()}: {e.details()}"
        return e
    raise AssertionError(f"expected {code}, but the call succeeded")


def main():
    endpoint, key = sys.argv[1], sys.argv[2]
    client = client_for(endpoint, key)
    HAS = CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION
    NO = CheckPermissionResponse.PERMISSIONSHIP_NO_PERMISSION
    cases = []

    def case(fn):
        cases.append(fn)
        return fn

    @case
    def schema_write_and_read():
        resp = client.WriteSchema(WriteSchemaRequest(schema=SCHEMA))
        assert resp.written_at.token
        text = client.ReadSchema(ReadSchemaRequest()).schema_text
        assert "definition document {" in text and "permission view = viewer + edit - banned" in text, text

    @case
    def write_and_check():
        resp = client.WriteRelationships(
            WriteRelationshipsRequest(
                updates=[
                    touch(obj("document", "readme"), "owner", subj("user", "alice")),
                    touch(obj("group", "eng"), "member", subj("user", "bob")),
                    touch(obj("document", "readme"), "viewer", subj("group", "eng", "member")),
                    touch(obj("document", "public"), "viewer", subj("user", "*")),
                    touch(obj("document", "public"), "banned", subj("user", "mallory")),
                ]
            )
        )
        token = resp.written_at
        assert check(client, obj("document", "readme"), "view", subj("user", "alice")) == HAS
        assert check(client, obj("document", "readme"), "view", subj("user", "bob")) == HAS
        assert check(client, obj("document", "readme"), "edit", subj("user", "bob")) == NO
        assert check(client, obj("document", "public"), "view", subj("user", "anyone")) == HAS
        assert check(client, obj("document", "public"), "view", subj("user", "mallory")) == NO
        fresh = client.CheckPermission(
            CheckPermissionRequest(
                consistency=Consistency(at_least_as_fresh=token),
                resource=obj("document", "readme"),
                permission="view",
                subject=subj("user", "bob"),
            )
        )
        assert fresh.permissionship == HAS and fresh.checked_at.token

    @case
    def bulk_check_keeps_order_and_per_item_errors():
        items = [
            CheckBulkPermissionsRequestItem(resource=obj("document", "readme"), permission="view", subject=subj("user", "bob")),
            CheckBulkPermissionsRequestItem(resource=obj("document", "readme"), permission="nosuch", subject=subj("user", "bob")),
            CheckBulkPermissionsRequestItem(resource=obj("document", "readme"), permission="edit", subject=subj("user", "bob")),
        ]
        resp = client.CheckBulkPermissions(CheckBulkPermissionsRequest(consistency=FULL, items=items))
        assert len(resp.pairs) == 3
        assert resp.pairs[0].item.permissionship == HAS
        assert resp.pairs[1].HasField("error") and resp.pairs[1].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert resp.pairs[2].item.permissionship == NO

    @case
    def lookup_resources_streams_and_pages():
        from authzed.api.v1 import LookupResourcesRequest

        def request(limit=0, cursor=None):
            return LookupResourcesRequest(
                consistency=FULL,
                resource_object_type="document",
                permission="view",
                subject=subj("user", "bob"),
                optional_limit=limit,
                optional_cursor=cursor,
            )

        found = sorted(r.resource_object_id for r in client.LookupResources(request()))
        assert found == ["public", "readme"], found
        first = list(client.LookupResources(request(1)))
        assert len(first) == 1, first
        second = list(client.LookupResources(request(1, first[0].after_result_cursor)))
        assert len(second) == 1 and second[0].resource_object_id != first[0].resource_object_id
        rest = list(client.LookupResources(request(1, second[0].after_result_cursor)))
        assert rest == [], rest

    @case
    def lookup_subjects_with_wildcard_exclusions():
        from authzed.api.v1 import LookupSubjectsRequest

        def subjects(resource):
            return list(
                client.LookupSubjects(
                    LookupSubjectsRequest(
                        consistency=FULL, resource=resource, permission="view", subject_object_type="user"
                    )
                )
            )

        public = subjects(obj("document", "public"))
        assert [r.subject.subject_object_id for r in public] == ["*"], public
        assert [e.subject_object_id for e in public[0].excluded_subjects] == ["mallory"], public
        readme = sorted(r.subject.subject_object_id for r in subjects(obj("document", "readme")))
        assert readme == ["alice", "bob"], readme

    @case
    def read_relationships_streams_in_order():
        got = [
            (r.relationship.resource.object_id, r.relationship.relation, r.relationship.subject.object.object_id)
            for r in client.ReadRelationships(
                ReadRelationshipsRequest(consistency=FULL, relationship_filter=RelationshipFilter(resource_type="document"))
            )
        ]
        assert got == sorted(got), got
        assert ("readme", "owner", "alice") in got and len(got) == 4, got

    @case
    def delete_relationships():
        resp = client.DeleteRelationships(
            DeleteRelationshipsRequest(
                relationship_filter=RelationshipFilter(resource_type="document", optional_resource_id="public")
            )
        )
        assert resp.deleted_at.token
        assert check(client, obj("document", "public"), "view", subj("user", "anyone")) == NO

    @case
    def watch_streams_changes_after_a_token():
        start = client.WriteRelationships(
            WriteRelationshipsRequest(updates=[touch(obj("document", "w0"), "viewer", subj("user", "ann"))])
        ).written_at
        metadata = struct_pb2.Struct()
        metadata.update({"request": "python"})
        first = client.WriteRelationships(
            WriteRelationshipsRequest(
                updates=[
                    RelationshipUpdate(
                        operation=RelationshipUpdate.Operation.OPERATION_CREATE,
                        relationship=Relationship(resource=obj("document", "w1"), relation="viewer", subject=subj("user", "ann")),
                    )
                ],
                optional_transaction_metadata=metadata,
            )
        ).written_at
        client.WriteRelationships(
            WriteRelationshipsRequest(
                updates=[
                    RelationshipUpdate(
                        operation=RelationshipUpdate.Operation.OPERATION_DELETE,
                        relationship=Relationship(resource=obj("document", "w1"), relation="viewer", subject=subj("user", "ann")),
                    )
                ]
            )
        )
        stream = client.Watch(
            WatchRequest(
                optional_start_cursor=start,
                optional_object_types=["document"],
                optional_update_kinds=[WatchKind.WATCH_KIND_INCLUDE_CHECKPOINTS],
            ),
            timeout=30,
        )
        try:
            created = next(stream)
            assert [(u.operation, u.relationship.resource.object_id) for u in created.updates] == [
                (RelationshipUpdate.Operation.OPERATION_TOUCH, "w1")
            ], created
            assert created.changes_through.token == first.token
            assert created.optional_transaction_metadata == metadata
            assert list(created.full_revision_metadata) == [metadata]
            deleted = next(stream)
            assert [(u.operation, u.relationship.resource.object_id) for u in deleted.updates] == [
                (RelationshipUpdate.Operation.OPERATION_DELETE, "w1")
            ], deleted
            checkpoint = next(stream)
            assert checkpoint.is_checkpoint and not checkpoint.updates
            assert checkpoint.changes_through.token == deleted.changes_through.token
        finally:
            stream.cancel()
        # Resuming from the first change's token sees only what came after it.
        resumed = client.Watch(WatchRequest(optional_start_cursor=first), timeout=30)
        try:
            after = next(resumed)
            assert [u.operation for u in after.updates] == [RelationshipUpdate.Operation.OPERATION_DELETE], after
        finally:
            resumed.cancel()

    @case
    def bulk_import_then_export_by_pages():
        batches = [
            ImportBulkRelationshipsRequest(
                relationships=[
                    Relationship(resource=obj("group", f"bulk{b}-{i}"), relation="member", subject=subj("user", "zed"))
                    for i in range(5)
                ]
            )
            for b in range(3)
        ]
        loaded = client.ImportBulkRelationships(iter(batches))
        assert loaded.num_loaded == 15, loaded
        expect_error(grpc.StatusCode.ALREADY_EXISTS, lambda: client.ImportBulkRelationships(iter(batches[:1])))
        exported, cursor, pages = [], None, 0
        while True:
            request = ExportBulkRelationshipsRequest(
                consistency=FULL,
                optional_limit=4,
                optional_relationship_filter=RelationshipFilter(resource_type="group", optional_resource_id_prefix="bulk"),
            )
            if cursor is not None:
                request.optional_cursor.CopyFrom(cursor)
            # One page per call, resuming from the previous page's cursor.
            page = next(iter(client.ExportBulkRelationships(request)), None)
            if page is None:
                break
            pages += 1
            exported += [r.resource.object_id for r in page.relationships]
            cursor = page.after_result_cursor
        assert exported == sorted(f"bulk{b}-{i}" for b in range(3) for i in range(5)), exported
        assert pages == 4, pages

    @case
    def errors_have_the_right_codes():
        e = expect_error(grpc.StatusCode.INVALID_ARGUMENT, lambda: client.WriteSchema(WriteSchemaRequest(schema="definition {")))
        assert e.details()
        expect_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            lambda: check(client, obj("nosuchtype", "x"), "view", subj("user", "alice")),
        )
        expect_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: check(client, obj("document", "readme"), "view", subj("user", "*")),
        )

    @case
    def reflect_and_diff_schema():
        from authzed.api.v1 import DiffSchemaRequest, ReflectSchemaRequest

        reflected = client.ReflectSchema(ReflectSchemaRequest(consistency=FULL))
        document = next(d for d in reflected.definitions if d.name == "document")
        viewer = next(r for r in document.relations if r.name == "viewer")
        kinds = [t.WhichOneof("typeref") for t in viewer.subject_types]
        assert kinds == ["is_terminal_subject", "optional_relation_name", "is_public_wildcard"], kinds
        diff = client.DiffSchema(DiffSchemaRequest(consistency=FULL, comparison_schema=SCHEMA + "definition folder {}"))
        assert [d.WhichOneof("diff") for d in diff.diffs] == ["definition_added"], diff

    @case
    def relationship_counters():
        # Not re-exported by authzed.api.v1; the generated module has them.
        from authzed.api.v1.experimental_service_pb2 import (
            ExperimentalCountRelationshipsRequest,
            ExperimentalRegisterRelationshipCounterRequest,
            ExperimentalUnregisterRelationshipCounterRequest,
        )

        viewers = RelationshipFilter(resource_type="document", optional_relation="viewer")
        client.ExperimentalRegisterRelationshipCounter(
            ExperimentalRegisterRelationshipCounterRequest(name="doc_viewers", relationship_filter=viewers)
        )
        counted = client.ExperimentalCountRelationships(ExperimentalCountRelationshipsRequest(name="doc_viewers"))
        # Earlier cases wrote document viewers too; the counter must agree with a read.
        read = list(client.ReadRelationships(ReadRelationshipsRequest(consistency=FULL, relationship_filter=viewers)))
        assert counted.read_counter_value.relationship_count == len(read) > 0, counted
        client.ExperimentalUnregisterRelationshipCounter(ExperimentalUnregisterRelationshipCounterRequest(name="doc_viewers"))
        expect_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            lambda: client.ExperimentalCountRelationships(ExperimentalCountRelationshipsRequest(name="doc_viewers")),
        )

    passed = failed = 0
    for fn in cases:
        try:
            fn()
            print(f"ok     {fn.__name__}")
            passed += 1
        except Exception:  # noqa: BLE001 - every failure is reported, then counted
            print(f"FAILED {fn.__name__}")
            traceback.print_exc()
            failed += 1
    print(f"python client: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
