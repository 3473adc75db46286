#!/usr/bin/env python3
"""Check that Trellis' proto/ tree is wire-compatible with authzed.api.v1.

Compiles proto/authzed/api/v1/*.proto with grpc_tools.protoc into a
FileDescriptorSet, loads the descriptors shipped (as serialized
FileDescriptorProtos) in the PyPI `authzed` package, and compares every
message, enum and service of package authzed.api.v1:

  * messages: defining file, every field's name, number, label, type,
    type_name, json_name, oneof membership, proto3 `optional`, deprecated
    flag, map-entry-ness (and the entry's key/value types);
  * enums: defining file, value names + numbers (+ deprecated flags);
  * services: methods, input/output types, client/server streaming,
    deprecated flag and the google.api.http rule (verb, path, body,
    response_body, additional bindings).

Comments and protoc-gen-validate / buf.validate / openapiv2 options are
ignored. Prints each difference, then "N passed, M failed" (one check per
message/enum/service) and exits non-zero on any difference.

Usage: python tests/proto_compat.py [--proto-root DIR]
Needs: pip install authzed grpcio-tools  (see tests/proto_compat.sh)
"""

import argparse
import importlib
import os
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

try:
    # Registers the google.api.http extension so MethodOptions parse it.
    from google.api import annotations_pb2
except ImportError:  # pragma: no cover
    sys.exit("googleapis-common-protos is required (installed with authzed)")

PACKAGE = "authzed.api.v1"
FDP = descriptor_pb2.FieldDescriptorProto
TYPE_NAMES = {v: k for k, v in FDP.Type.items()}
LABEL_NAMES = {v: k for k, v in FDP.Label.items()}


# ---------------------------------------------------------------- loading


def load_reference():
    """FileDescriptorProtos of package authzed.api.v1 from the authzed wheel."""
    import authzed.api.v1 as v1pkg

    files = []
    for mod in sorted(pkgutil.iter_modules(v1pkg.__path__), key=lambda m: m.name):
        if not mod.name.endswith("_pb2"):
            continue
        m = importlib.import_module(f"authzed.api.v1.{mod.name}")
        fdp = descriptor_pb2.FileDescriptorProto.FromString(m.DESCRIPTOR.serialized_pb)
        if fdp.package == PACKAGE:
            files.append(fdp)
    return files


def compile_ours(proto_root: Path):
    """Compile proto_root/authzed/api/v1/*.proto; return FileDescriptorProtos."""
    import grpc_tools

    wkt = Path(grpc_tools.__file__).parent / "_proto"
    sources = sorted(
        str(p.relative_to(proto_root)) for p in (proto_root / "authzed/api/v1").glob("*.proto")
    )
    if not sources:
        sys.exit(f"no .proto files under {proto_root / 'authzed/api/v1'}")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        cmd = [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{proto_root}", f"-I{wkt}",
            "--include_imports", f"--descriptor_set_out={out}",
            *sources,
        ]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0 or res.stderr.strip():
            sys.stderr.write(res.stderr)
        if res.returncode != 0:
            sys.exit("protoc failed")
        fds = descriptor_pb2.FileDescriptorSet.FromString(Path(out).read_bytes())
    return [f for f in fds.file if f.package == PACKAGE]


# --------------------------------------------------------------- indexing


def index(files):
    """Map full name -> (kind, proto, file name, parent DescriptorProto|None)."""
    out = {}

    def walk_msg(msg, prefix, fname):
        full = f"{prefix}.{msg.name}"
        out[full] = ("message", msg, fname)
        for e in msg.enum_type:
            out[f"{full}.{e.name}"] = ("enum", e, fname)
        for n in msg.nested_type:
            walk_msg(n, full, fname)

    for f in files:
        for m in f.message_type:
            walk_msg(m, f".{f.package}", f.name)
        for e in f.enum_type:
            out[f".{f.package}.{e.name}"] = ("enum", e, f.name)
        for s in f.service:
            out[f".{f.package}.{s.name}"] = ("service", s, f.name)
    return out


# ------------------------------------------------------------- describing


def map_entry_sig(idx, type_name):
    """(key type, value type, value type_name) if type_name is a map entry."""
    ent = idx.get(type_name)
    if not ent or ent[0] != "message" or not ent[1].options.map_entry:
        return None
    k, v = ent[1].field[0], ent[1].field[1]
    return (TYPE_NAMES[k.type], TYPE_NAMES[v.type], v.type_name)


def field_sig(msg, f, idx):
    oneof = None
    if f.HasField("oneof_index"):
        oneof = msg.oneof_decl[f.oneof_index].name
    return {
        "number": f.number,
        "label": LABEL_NAMES[f.label],
        "type": TYPE_NAMES[f.type],
        "type_name": f.type_name,
        "json_name": f.json_name,
        "oneof": oneof,
        "proto3_optional": f.proto3_optional,
        "deprecated": f.options.deprecated,
        "map_entry": map_entry_sig(idx, f.type_name) if f.type_name else None,
    }


def http_sig(opts):
    def rule(r):
        pat = r.WhichOneof("pattern")
        if pat == "custom":
            verb = (f"custom:{r.custom.kind}", r.custom.path)
        elif pat:
            verb = (pat, getattr(r, pat))
        else:
            verb = (None, None)
        return (verb, r.body, r.response_body, tuple(rule(b) for b in r.additional_bindings))

    if not opts.HasExtension(annotations_pb2.http):
        return None
    return rule(opts.Extensions[annotations_pb2.http])


def compare_dicts(what, ref, ours, diffs):
    for k in sorted(set(ref) | set(ours)):
        if ref.get(k) != ours.get(k):
            diffs.append(f"{what}: {k}: reference={ref.get(k)!r} ours={ours.get(k)!r}")


def compare_message(name, ref, ours, ridx, oidx, diffs):
    if ref.options.map_entry != ours.options.map_entry:
        diffs.append(f"{name}: map_entry reference={ref.options.map_entry} ours={ours.options.map_entry}")
    if ref.options.deprecated != ours.options.deprecated:
        diffs.append(f"{name}: deprecated reference={ref.options.deprecated} ours={ours.options.deprecated}")
    rf = {f.name: f for f in ref.field}
    of = {f.name: f for f in ours.field}
    for fname in sorted(set(rf) | set(of)):
        if fname not in of:
            diffs.append(f"{name}.{fname}: missing in ours (number {rf[fname].number})")
            continue
        if fname not in rf:
            diffs.append(f"{name}.{fname}: extra in ours (number {of[fname].number})")
            continue
        compare_dicts(f"{name}.{fname}", field_sig(ref, rf[fname], ridx), field_sig(ours, of[fname], oidx), diffs)
    # Oneof declarations (names; membership is checked per field above).
    r_oneofs = sorted(o.name for o in ref.oneof_decl)
    o_oneofs = sorted(o.name for o in ours.oneof_decl)
    if r_oneofs != o_oneofs:
        diffs.append(f"{name}: oneofs reference={r_oneofs} ours={o_oneofs}")
    r_res = sorted((r.start, r.end) for r in ref.reserved_range)
    o_res = sorted((r.start, r.end) for r in ours.reserved_range)
    if r_res != o_res or sorted(ref.reserved_name) != sorted(ours.reserved_name):
        diffs.append(f"{name}: reserved ranges/names differ")


def compare_enum(name, ref, ours, diffs):
    rv = {v.name: (v.number, v.options.deprecated) for v in ref.value}
    ov = {v.name: (v.number, v.options.deprecated) for v in ours.value}
    compare_dicts(f"{name} (number, deprecated)", rv, ov, diffs)
    if ref.options.allow_alias != ours.options.allow_alias:
        diffs.append(f"{name}: allow_alias differs")
    if ref.options.deprecated != ours.options.deprecated:
        diffs.append(f"{name}: deprecated differs")


def compare_service(name, ref, ours, diffs):
    if ref.options.deprecated != ours.options.deprecated:
        diffs.append(f"{name}: deprecated differs")
    rm = {m.name: m for m in ref.method}
    om = {m.name: m for m in ours.method}
    for mname in sorted(set(rm) | set(om)):
        if mname not in om:
            diffs.append(f"{name}.{mname}: rpc missing in ours")
            continue
        if mname not in rm:
            diffs.append(f"{name}.{mname}: rpc extra in ours")
            continue
        r, o = rm[mname], om[mname]
        sig = lambda m: {  # noqa: E731
            "input_type": m.input_type,
            "output_type": m.output_type,
            "client_streaming": m.client_streaming,
            "server_streaming": m.server_streaming,
            "deprecated": m.options.deprecated,
            "google.api.http": http_sig(m.options),
        }
        compare_dicts(f"{name}.{mname}", sig(r), sig(o), diffs)


# ------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proto-root", default=str(Path(__file__).resolve().parent.parent / "proto"))
    args = ap.parse_args()

    import importlib.metadata as md

    ref_files = load_reference()
    our_files = compile_ours(Path(args.proto_root).resolve())
    ridx, oidx = index(ref_files), index(our_files)

    print(f"reference: authzed {md.version('authzed')} ({len(ref_files)} files in {PACKAGE}); "
          f"ours: {len(our_files)} files from {args.proto_root}")

    passed = failed = 0
    for name in sorted(set(ridx) | set(oidx)):
        r, o = ridx.get(name), oidx.get(name)
        # Map-entry messages are synthetic; they are checked through the owning field.
        if (r and r[0] == "message" and r[1].options.map_entry) or (
            o and o[0] == "message" and o[1].options.map_entry
        ):
            continue
        diffs = []
        if r is None:
            diffs.append(f"{name}: {o[0]} present in ours ({o[2]}) but not in authzed")
        elif o is None:
            diffs.append(f"{name}: {r[0]} missing in ours (expected in {r[2]})")
        elif r[0] != o[0]:
            diffs.append(f"{name}: kind reference={r[0]} ours={o[0]}")
        else:
            if r[2] != o[2]:
                diffs.append(f"{name}: defined in {o[2]}, authzed defines it in {r[2]}")
            if r[0] == "message":
                compare_message(name, r[1], o[1], ridx, oidx, diffs)
            elif r[0] == "enum":
                compare_enum(name, r[1], o[1], diffs)
            else:
                compare_service(name, r[1], o[1], diffs)
        if diffs:
            failed += 1
            for d in diffs:
                print("DIFF", d)
        else:
            passed += 1

    # File-level: every authzed file with content must exist with the same name.
    r_names = {f.name for f in ref_files if f.message_type or f.enum_type or f.service}
    o_names = {f.name for f in our_files}
    for missing in sorted(r_names - o_names):
        print(f"DIFF file {missing} missing in ours")
        failed += 1

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
