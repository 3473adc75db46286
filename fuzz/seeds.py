"""Writes a seed corpus for the `requests` fuzz target: one file per
request, the selector byte the target dispatches on followed by the
request's protobuf encoding, built with the official `authzed` client's
message classes. Requests name the fuzzing schema's types so the fuzzer
starts from inputs that reach the engine.

    python fuzz/seeds.py fuzz/corpus/requests
"""
import hashlib
import os
import sys

from authzed.api.v1.core_pb2 import (
    ContextualizedCaveat, ObjectReference, Relationship, RelationshipUpdate, SubjectReference,
)
from authzed.api.v1.permission_service_pb2 import (
    CheckBulkPermissionsRequest, CheckBulkPermissionsRequestItem, CheckPermissionRequest,
    Consistency, DeleteRelationshipsRequest, ExpandPermissionTreeRequest,
    ExportBulkRelationshipsRequest, LookupResourcesRequest, LookupSubjectsRequest,
    ReadRelationshipsRequest, RelationshipFilter, SubjectFilter, WriteRelationshipsRequest,
)
from authzed.api.v1.schema_service_pb2 import DiffSchemaRequest
from google.protobuf.struct_pb2 import Struct

FULL = Consistency(fully_consistent=True)


def obj(t, i):
    return ObjectReference(object_type=t, object_id=i)


def subj(t, i, rel=""):
    return SubjectReference(object=obj(t, i), optional_relation=rel)


def rel(resource, relation, subject, caveat=None, context=None):
    r = Relationship(resource=resource, relation=relation, subject=subject)
    if caveat:
        ctx = Struct()
        ctx.update(context or {})
        r.optional_caveat.CopyFrom(ContextualizedCaveat(caveat_name=caveat, context=ctx))
    return r


def touch(r):
    return RelationshipUpdate(operation=RelationshipUpdate.OPERATION_TOUCH, relationship=r)


def seeds():
    alice, bob = subj("user", "alice"), subj("user", "bob")
    doc, folder = obj("document", "d1"), obj("folder", "f1")
    yield 2, WriteRelationshipsRequest(updates=[
        touch(rel(doc, "viewer", subj("group", "g1", "member"))),
        touch(rel(obj("group", "g1"), "member", alice)),
        touch(rel(obj("group", "g1"), "member", subj("group", "g1", "member"))),
        touch(rel(doc, "folder", subj("folder", "f1"))),
        touch(rel(folder, "parent", subj("folder", "f2"))),
        touch(rel(obj("folder", "f2"), "viewer", bob, "ip_allowed", {"allowed": "10.0.0.0/8"})),
        touch(rel(doc, "viewer", subj("user", "*"))),
        touch(rel(obj("group", "g2"), "member", bob, "limited", {"limit": 3})),
    ])
    for permission in ("view", "edit", "viewer", "banned"):
        yield 0, CheckPermissionRequest(consistency=FULL, resource=doc, permission=permission,
                                        subject=alice)
    ctx = Struct()
    ctx.update({"ip": "10.1.2.3"})
    yield 0, CheckPermissionRequest(consistency=FULL, resource=folder, permission="view",
                                    subject=bob, context=ctx, with_tracing=True)
    yield 1, CheckBulkPermissionsRequest(consistency=FULL, items=[
        CheckBulkPermissionsRequestItem(resource=doc, permission="view", subject=alice),
        CheckBulkPermissionsRequestItem(resource=folder, permission="all_view", subject=bob),
    ])
    yield 3, DeleteRelationshipsRequest(relationship_filter=RelationshipFilter(
        resource_type="group", optional_subject_filter=SubjectFilter(subject_type="user")),
        optional_limit=5, optional_allow_partial_deletions=True)
    yield 4, ExpandPermissionTreeRequest(consistency=FULL, resource=doc, permission="view")
    yield 5, ReadRelationshipsRequest(consistency=FULL, relationship_filter=RelationshipFilter(
        resource_type="document", optional_resource_id_prefix="d"), optional_limit=3)
    yield 6, LookupResourcesRequest(consistency=FULL, resource_object_type="document",
                                    permission="view", subject=alice, optional_limit=2)
    yield 7, LookupSubjectsRequest(consistency=FULL, resource=doc, permission="view",
                                   subject_object_type="user")
    yield 8, ExportBulkRelationshipsRequest(consistency=FULL, optional_limit=2)
    yield 9, DiffSchemaRequest(consistency=FULL,
                               comparison_schema="definition user {}\ndefinition document {}")


def main(directory):
    os.makedirs(directory, exist_ok=True)
    for selector, message in seeds():
        data = bytes([selector]) + message.SerializeToString()
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1])
