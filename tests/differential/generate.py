#!/usr/bin/env python3
"""Deterministic generator of small random CheckPermission test cases for differential testing.

`generate(seed)` returns one case: a schema, relationships and *candidate* checks. The same seed
always gives the same case (everything derives from `random.Random(seed)`; no set or dict
iteration order is relied on). `record.py` sends the case to real SpiceDB, keeps SpiceDB's
answers, and picks a balanced subset of the candidates (true and false mixed) for cases.json.

What a case exercises:
  * 2-4 definitions: `user` plus 1-3 others drawn from a pool of names;
  * relations allowing plain types, `type:*` wildcards, subject sets `type#relation` and
    `type#permission`, the definition's own type (recursion: `group#member` in group, a `parent`
    of the same type), and sometimes a caveat (`user with cav`) or `user with expiration`;
  * permissions built from `+`, `&`, `-` (printed with and without parentheses, so SpiceDB's
    precedence `+` > `&` > `-` matters), `nil`, `rel->perm`, `rel.any(perm)`, `rel.all(perm)`,
    computed references to earlier permissions and, rarely, a permission referring to itself
    inside a union;
  * 5-30 relationships over a few object ids per type, including wildcards and subject sets;
    about a third of the cases allow cycles in the data (SpiceDB answers some checks on those
    with a max-depth error, recorded as the expected outcome), the rest are acyclic;
  * candidate checks on relations and permissions with user subjects, subject-set subjects
    (including the identity `x#r@x#r`), other object subjects, a few invalid requests (wildcard
    subject, unknown permission or type) and, when a caveat is used, request contexts.

Schemas follow SpiceDB's rules closely enough that it accepts nearly all of them (names of 3+
lowercase characters, arrows only on relations that cannot reach a wildcard, no subject set that
reaches a wildcard through another definition, computed references only to earlier permissions,
so no pure alias cycles). SpiceDB's verdict still decides: record.py discards and counts rejects.

`lookup_candidates(seed, schema, relationships)` derives candidate LookupResources and
LookupSubjects requests from any case (record_lookups.py records them), and `generate(seed,
"wildcards")` is a profile with more wildcards, exclusions and caveats for extra lookup cases
(see PROFILES; the default profile is the one cases.json was made with).

Usage:  generate.py [--seed N] [--count K] [--profile P] [--lookups]    print K cases from seed N as JSON
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys

USER = "user"
TYPE_POOL = ["group", "folder", "document", "org", "team", "project"]
RELATION_POOL = ["member", "viewer", "editor", "owner", "parent", "banned", "reader", "admin", "writer", "manager"]
PERMISSION_POOL = ["view", "edit", "manage", "access", "read", "write", "remove", "share"]
USER_IDS = ["alice", "bob", "carol", "dave", "erin", "frank"]
NOBODY = "nobody"  # a user that never appears in relationships

PAST = "2000-01-01T00:00:00Z"
FUTURE = "2999-12-31T23:59:59Z"

# Caveats used by some cases: (declaration, values for relationship contexts, values for request contexts).
CAVEATS = [
    {
        "name": "flag_set",
        "decl": "caveat flag_set(flag bool) {\n\tflag\n}",
        "stored": [None, {"flag": True}, {"flag": False}],
        "request": [None, {"flag": True}, {"flag": False}],
    },
    {
        "name": "under_limit",
        "decl": "caveat under_limit(count int, limit int) {\n\tcount < limit\n}",
        "stored": [None, {"limit": 5}, {"limit": 2, "count": 1}, {"limit": 1, "count": 3}],
        "request": [None, {"count": 3}, {"count": 7}, {"count": 1, "limit": 10}],
    },
]


class Entry:
    """One allowed subject type of a relation: `type`, `type:*`, `type#rel`, `type with cav`."""

    def __init__(self, typ: str, wildcard: bool = False, relation: str | None = None, caveat: str | None = None,
                 expiration: bool = False):
        self.typ, self.wildcard, self.relation = typ, wildcard, relation
        self.caveat, self.expiration = caveat, expiration

    def key(self) -> tuple:
        return (self.typ, self.wildcard, self.relation or "", self.caveat or "", self.expiration)

    def text(self) -> str:
        s = self.typ
        if self.wildcard:
            s += ":*"
        elif self.relation:
            s += "#" + self.relation
        if self.caveat and self.expiration:
            s += f" with {self.caveat} and expiration"
        elif self.caveat:
            s += f" with {self.caveat}"
        elif self.expiration:
            s += " with expiration"
        return s


class Definition:
    def __init__(self, name: str):
        self.name = name
        self.relations: list[str] = []
        self.permissions: list[str] = []
        self.wild: dict[str, bool] = {}  # relation -> may (transitively) reach a wildcard
        self.entries: dict[str, list[Entry]] = {}
        self.exprs: dict[str, str] = {}

    def names(self) -> list[str]:
        return self.relations + self.permissions


# Knobs of the generator. `default` made cases.json. `wildcards` makes the extra lookup cases,
# where LookupSubjects answers a wildcard with its excluded subjects (`* - {bob}`): more wildcard
# relations and wildcard relationships, more exclusions and caveats, and in each definition with a
# `user:*` relation one more permission `wildcard_rel - other_rel[s]`. The default profile draws
# exactly the random numbers it always did, so it reproduces the recorded cases.
PROFILES = {
    "default": {"caveat": 0.25, "wildcard": 0.22, "ops": (0.42, 0.30, 0.28), "wildcard_weight": 1.0,
                "exclusion_permission": False},
    "wildcards": {"caveat": 0.5, "wildcard": 0.6, "ops": (0.30, 0.20, 0.50), "wildcard_weight": 3.0,
                  "exclusion_permission": True},
}


class Gen:
    def __init__(self, seed: int, profile: str = "default"):
        self.seed = seed
        self.rng = random.Random(seed)
        self.knobs = PROFILES[profile]

    # -- schema -----------------------------------------------------------------------------

    def schema(self) -> None:
        r = self.rng
        n_other = r.choice([1, 2, 2, 3, 3])
        names = r.sample(TYPE_POOL, n_other)
        self.defs: list[Definition] = [Definition(USER)] + [Definition(n) for n in names]
        self.by_name = {d.name: d for d in self.defs}
        self.others = self.defs[1:]
        self.caveat = r.choice(CAVEATS) if r.random() < self.knobs["caveat"] else None
        self.expiration = r.random() < 0.12
        self.cyclic = r.random() < 0.35

        # pass 1: names and wildcard flags, so entries may point at any definition
        for d in self.others:
            d.relations = sorted(r.sample(RELATION_POOL, r.choice([1, 2, 2, 3, 3, 4])), key=RELATION_POOL.index)
            d.permissions = r.sample(PERMISSION_POOL, r.choice([1, 1, 2, 2, 3]))
            for rel in d.relations:
                d.wild[rel] = r.random() < self.knobs["wildcard"]
        # pass 2: allowed subject types
        for d in self.others:
            for rel in d.relations:
                d.entries[rel] = self.entries_for(d, rel)
        # pass 3: permission expressions
        for d in self.others:
            for i, perm in enumerate(d.permissions):
                d.exprs[perm] = self.permission_expr(d, i)
        if self.knobs["exclusion_permission"]:
            for d in self.others:
                self.add_wildcard_exclusion(d)

    def add_wildcard_exclusion(self, d: Definition) -> None:
        """`permission P = w - x` or `w - (x + y)`: w a relation allowing `user:*`, x, y others allowing users."""
        r = self.rng
        wild = [rel for rel in d.relations if any(e.typ == USER and e.wildcard for e in d.entries[rel])]
        name = next((p for p in PERMISSION_POOL if p not in d.permissions), None)
        if not wild or name is None:
            return
        base = r.choice(wild)
        others = [rel for rel in d.relations if rel != base and any(e.typ == USER for e in d.entries[rel])]
        if not others:
            return
        minus = r.sample(others, min(len(others), r.choice([1, 1, 2])))
        d.permissions.append(name)
        d.exprs[name] = f"{base} - " + (minus[0] if len(minus) == 1 else "(" + " + ".join(minus) + ")")

    def entries_for(self, d: Definition, rel: str) -> list[Entry]:
        r = self.rng
        wild = d.wild[rel]

        def subject_set(kind: str) -> Entry | None:
            # same-definition subject sets (recursion) are favoured
            t = weighted(r, [(2.0 if t is d else 1.0, t) for t in self.others])
            if kind == "perm":
                return Entry(t.name, relation=r.choice(t.permissions))
            # A subject set through another definition must not reach a wildcard; within the
            # same definition SpiceDB allows it, but only a wildcard relation may do so (keeps
            # the flags exact, so arrows never see a wildcard).
            ok = [tr for tr in t.relations if not t.wild[tr] or (t is d and wild)]
            return Entry(t.name, relation=r.choice(ok)) if ok else None

        def pick(category: str) -> Entry | None:
            if category == "user":
                return Entry(USER)
            if category == "user_wild":
                return Entry(USER, wildcard=True)
            if category == "user_caveat":
                return Entry(USER, caveat=self.caveat["name"])
            if category == "user_expiration":
                return Entry(USER, expiration=True)
            if category == "object":
                return Entry(weighted(r, [(1.5 if t is d else 1.0, t.name) for t in self.others]))
            if category == "object_wild":
                return Entry(r.choice(self.others).name, wildcard=True)
            return subject_set("perm" if category == "subset_perm" else "rel")

        terminal = [(5.0, "user"), (2.5, "object")]
        if wild:
            terminal += [(2.5, "user_wild"), (0.4, "object_wild")]
        if self.caveat:
            terminal.append((2.5, "user_caveat"))
        if self.expiration:
            terminal.append((2.5, "user_expiration"))
        everything = terminal + [(3.0, "subset_rel"), (0.7, "subset_perm")]
        n = r.choice([1, 1, 2, 2, 2, 3])
        chosen: list[Entry] = []
        keys: set = set()
        for attempt in range(n * 5):
            if len(chosen) >= n:
                break
            # the first entry is usually a terminal one, so the relation can hold something
            e = pick(weighted(r, terminal if not chosen and r.random() < 0.85 else everything))
            if e is None or e.key() in keys:
                continue
            keys.add(e.key())
            chosen.append(e)
        if not chosen:
            chosen.append(Entry(USER))
        return chosen

    def arrowable(self, d: Definition) -> list[str]:
        """Relations usable on the left of an arrow: no wildcard, at least one object type."""
        return [rel for rel in d.relations
                if not d.wild[rel] and any(e.typ != USER and not e.wildcard for e in d.entries[rel])]

    def arrow_targets(self, d: Definition, rel: str) -> list[str]:
        names: list[str] = []
        for e in d.entries[rel]:
            if e.typ == USER or e.wildcard:
                continue
            for n in self.by_name[e.typ].names():
                if n not in names:
                    names.append(n)
        return names

    def permission_expr(self, d: Definition, index: int) -> str:
        r = self.rng
        perm = d.permissions[index]
        expr = self.expr(d, index, depth=0, max_depth=r.choice([1, 2, 2, 3]))
        if r.random() < 0.05:
            # recursion through a computed self-reference (legal inside a union)
            expr = f"{expr} + {perm}" if r.random() < 0.5 else f"{perm} + ({expr})"
        return expr

    def expr(self, d: Definition, index: int, depth: int, max_depth: int) -> str:
        r = self.rng
        if depth >= max_depth or (depth > 0 and r.random() < 0.45):
            return self.leaf(d, index)
        op = weighted(r, list(zip(self.knobs["ops"], ("+", "&", "-"))))
        n = 2 if op == "-" else r.choice([2, 2, 3])
        parts: list[str] = []
        for _ in range(n):
            for _attempt in range(3):  # avoid `x & x`-style repeats where there is a choice
                sub = self.expr(d, index, depth + 1, max_depth)
                if sub not in parts:
                    break
            if is_compound(sub) and r.random() < 0.75:
                sub = f"({sub})"
            parts.append(sub)
        return f" {op} ".join(parts)

    def leaf(self, d: Definition, index: int) -> str:
        r = self.rng
        choices: list[tuple[float, str]] = [(4.0, "rel"), (0.4, "nil")]
        if index > 0:
            choices.append((1.5, "perm"))
        arrows = self.arrowable(d)
        if arrows:
            choices.append((3.0, "arrow"))
        kind = weighted(r, choices)
        if kind == "nil":
            return "nil"
        if kind == "perm":
            return r.choice(d.permissions[:index])
        if kind == "arrow":
            rel = r.choice(arrows)
            targets = self.arrow_targets(d, rel)
            if targets and r.random() < 0.95:
                target = r.choice(targets)
            else:
                target = r.choice(PERMISSION_POOL + RELATION_POOL)  # may exist nowhere: empty branch
            form = weighted(r, [(0.5, "->"), (0.2, "any"), (0.3, "all")])
            if form == "->":
                return f"{rel}->{target}"
            return f"{rel}.{form}({target})"
        return r.choice(d.relations)

    def schema_text(self) -> str:
        out = []
        if self.expiration:
            out.append("use expiration\n")
        if self.caveat:
            out.append(self.caveat["decl"] + "\n")
        for d in self.defs:
            if d is self.defs[0]:
                out.append(f"definition {d.name} {{}}\n")
                continue
            lines = [f"definition {d.name} {{"]
            for rel in d.relations:
                lines.append(f"\trelation {rel}: " + " | ".join(e.text() for e in d.entries[rel]))
            for perm in d.permissions:
                lines.append(f"\tpermission {perm} = {d.exprs[perm]}")
            lines.append("}\n")
            out.append("\n".join(lines))
        return "\n".join(out).rstrip("\n") + "\n"

    # -- relationships ----------------------------------------------------------------------

    def ids(self) -> None:
        r = self.rng
        self.user_ids = sorted(r.sample(USER_IDS, r.choice([3, 4, 4, 5])), key=USER_IDS.index)
        self.obj_ids = {d.name: [f"{d.name[0]}{i}" for i in range(1, r.choice([2, 3, 3, 4]) + 1)]
                        for d in self.others}
        # acyclic cases: edges only go from lower to higher rank
        nodes = [(t, i) for t in sorted(self.obj_ids) for i in self.obj_ids[t]]
        r.shuffle(nodes)
        self.rank = {n: k for k, n in enumerate(nodes)}

    def relationships(self) -> list[str]:
        r = self.rng
        # caveated entries are favoured so that caveat cases have enough conditional answers
        slots = [(3.0 if e.caveat else self.knobs["wildcard_weight"] if e.wildcard else 1.0, (d, rel, e))
                 for d in self.others for rel in d.relations for e in d.entries[rel]]
        want = r.randint(5, 30)
        out: list[str] = []
        seen: set = set()
        for attempt in range(want * 20):
            if len(out) >= want:
                break
            d, rel, e = weighted(r, slots)
            rid = r.choice(self.obj_ids[d.name])
            if e.wildcard:
                sid = "*"
            elif e.typ == USER:
                sid = r.choice(self.user_ids)
            else:
                sid = r.choice(self.obj_ids[e.typ])
                if not self.cyclic and self.rank[(d.name, rid)] >= self.rank[(e.typ, sid)] and (
                        attempt < want * 10 or len(out) >= 5):
                    continue  # (after many attempts, a case still short of 5 may get a cycle)
            key = (d.name, rid, rel, e.typ, sid, e.relation or "")
            if key in seen:
                continue
            seen.add(key)
            s = f"{d.name}:{rid}#{rel}@{e.typ}:{sid}"
            if e.relation:
                s += f"#{e.relation}"
            if e.caveat:
                ctx = r.choice(self.caveat["stored"])
                s += f"[{e.caveat}" + (f":{compact(ctx)}" if ctx else "") + "]"
            if e.expiration:
                s += f"[expiration:{r.choice([PAST, FUTURE, FUTURE])}]"
            out.append(s)
        return out

    # -- candidate checks -------------------------------------------------------------------

    def candidates(self, rels: list[str]) -> list[dict]:
        r = self.rng
        subject_sets = []
        for rs in rels:
            subj = rs.split("@", 1)[1].split("[", 1)[0]
            if "#" in subj and subj not in subject_sets:
                subject_sets.append(subj)
        users = self.user_ids + [NOBODY]
        out: list[dict] = []
        seen: set = set()
        for _ in range(400):
            if len(out) >= 150:
                break
            d = r.choice(self.others)
            res = f"{d.name}:{r.choice(self.obj_ids[d.name])}"
            perm = r.choice(d.permissions) if r.random() < 0.65 else r.choice(d.relations)
            k = r.random()
            if k < 0.70:
                subj = f"{USER}:{r.choice(users)}"
            elif k < 0.80 and subject_sets:
                subj = r.choice(subject_sets)
            elif k < 0.85:
                subj = f"{res}#{perm}"  # identity rule
            elif k < 0.93:
                t = r.choice(self.others)
                subj = f"{t.name}:{r.choice(self.obj_ids[t.name])}"
                if r.random() < 0.5:
                    subj += "#" + r.choice(t.names())
            elif k < 0.96:
                t = r.choice(self.others)
                subj = f"{t.name}:{r.choice(self.obj_ids[t.name])}#" + r.choice(t.names())
            else:
                # invalid requests: SpiceDB's error is the expected answer
                bad = r.randrange(4)
                if bad == 0:
                    subj = f"{USER}:*"
                elif bad == 1:
                    subj = f"{USER}:{r.choice(users)}"
                    perm = "unknown_perm"
                elif bad == 2:
                    subj = f"{USER}:{r.choice(users)}"
                    res = f"missing:{r.choice(self.obj_ids[d.name])}"
                else:
                    subj = f"missing:{r.choice(users)}"
            check: dict = {"resource": res, "permission": perm, "subject": subj}
            if self.caveat and r.random() < 0.6:
                ctx = r.choice(self.caveat["request"])
                if ctx is not None:
                    check["context"] = ctx
            key = json.dumps(check, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            out.append(check)
        return out


def weighted(r: random.Random, items: list[tuple[float, object]]):
    total = sum(w for w, _ in items)
    x = r.random() * total
    for w, v in items:
        x -= w
        if x < 0:
            return v
    return items[-1][1]


def is_compound(expr: str) -> bool:
    depth = 0
    for i, c in enumerate(expr):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and c in "+&" or (depth == 0 and c == "-" and expr[i + 1: i + 2] == " "):
            return True
    return False


def compact(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def generate(seed: int, profile: str = "default") -> dict:
    """One case: {seed, schema, relationships, candidates, cyclic}. Deterministic in `seed`."""
    g = Gen(seed, profile)
    g.schema()
    g.ids()
    rels = g.relationships()
    return {
        "seed": seed,
        "schema": g.schema_text(),
        "relationships": rels,
        "candidates": g.candidates(rels),
        "cyclic": g.cyclic,
        "target_checks": g.rng.randint(20, 60),
    }


# -- lookup candidates (LookupResources / LookupSubjects) --------------------------------------

_SCHEMA_DEFINITION = re.compile(r"^definition ([a-z][a-z0-9_/]*) \{(.*?)\}", re.M | re.S)
_SCHEMA_MEMBER = re.compile(r"^\s*(relation|permission) ([a-z][a-z0-9_]*)", re.M)
_SCHEMA_CAVEAT = re.compile(r"^caveat ([a-z][a-z0-9_]*)\(", re.M)


def schema_outline(schema: str) -> dict[str, dict[str, list[str]]]:
    """Definition name -> {"relations", "permissions"} of a generated schema text."""
    out: dict[str, dict[str, list[str]]] = {}
    for name, body in _SCHEMA_DEFINITION.findall(schema):
        members: dict[str, list[str]] = {"relations": [], "permissions": []}
        for kind, member in _SCHEMA_MEMBER.findall(body):
            members[kind + "s"].append(member)
        out[name] = members
    return out


def lookup_candidates(seed: int, schema: str, relationships: list[str]) -> list[dict]:
    """Candidate LookupResources/LookupSubjects requests for a case, deterministic in `seed`.

    Derived from the case's schema text and relationship strings alone (any case of cases.json
    works, whatever generator version made it). Each candidate is
      {"kind": "lr", "resource_type", "permission", "subject": "type:id[#rel]", "context"?} or
      {"kind": "ls", "resource": "type:id", "permission", "subject_type", "subject_relation"?, "context"?}.
    Subjects are users (also one that appears nowhere), objects, subject sets (those written in
    the relationships and random ones); resources include an id that appears nowhere; a few
    requests are invalid (wildcard subject, unknown permission, type or subject relation), and
    with a caveat most requests carry a request context. ~36 random requests, then up to 16
    LookupSubjects of users on permissions of the objects that appear in the relationships
    (where wildcards, their exclusions and caveats show up; they are rare in random requests).
    """
    r = random.Random(seed * 104729 + 31)  # independent of the stream that made the checks
    outline = schema_outline(schema)
    others = [t for t in outline if t != USER]
    if not others:
        return []
    ids: dict[str, list[str]] = {t: [] for t in outline}
    subject_sets: list[str] = []
    for text in relationships:
        resource, _, subject = text.split("[", 1)[0].partition("@")
        rtype, _, rid = resource.split("#", 1)[0].partition(":")
        stype, _, sid = subject.split("#", 1)[0].partition(":")
        for t, i in ((rtype, rid), (stype, sid)):
            if i != "*" and t in ids and i not in ids[t]:
                ids[t].append(i)
        if "#" in subject and subject not in subject_sets:
            subject_sets.append(subject)
    users = ids[USER] + [NOBODY]
    caveat = next((c for c in CAVEATS if c["name"] in _SCHEMA_CAVEAT.findall(schema)), None)

    def names(t: str) -> list[str]:
        return outline[t]["relations"] + outline[t]["permissions"]

    def permission_of(t: str) -> str:
        perms, rels = outline[t]["permissions"], outline[t]["relations"]
        return r.choice(perms) if perms and (r.random() < 0.65 or not rels) else r.choice(rels or perms)

    def object_of(t: str) -> str:
        known = ids[t]
        if not known or r.random() < 0.08:
            return f"{t}:{t[0]}9"  # appears nowhere
        return f"{t}:{r.choice(known)}"

    def lr() -> dict:
        t = r.choice(others)
        q: dict = {"kind": "lr", "resource_type": t, "permission": permission_of(t)}
        k = r.random()
        if k < 0.55:
            q["subject"] = f"{USER}:{r.choice(users)}"
        elif k < 0.70 and subject_sets:
            q["subject"] = r.choice(subject_sets)
        elif k < 0.82:
            s = r.choice(others)
            q["subject"] = f"{object_of(s)}#{r.choice(names(s))}"
        elif k < 0.95:
            q["subject"] = object_of(r.choice(others))
        else:
            bad = r.randrange(4)
            q["subject"] = f"{USER}:{r.choice(users)}"
            if bad == 0:
                q["subject"] = f"{USER}:*"
            elif bad == 1:
                q["permission"] = "unknown_perm"
            elif bad == 2:
                q["resource_type"] = "missing"
            else:
                q["subject"] = f"missing:{r.choice(users)}"
        return q

    def ls() -> dict:
        t = r.choice(others)
        q: dict = {"kind": "ls", "resource": object_of(t), "permission": permission_of(t)}
        k = r.random()
        if k < 0.62:
            q["subject_type"] = USER
        elif k < 0.80:
            q["subject_type"] = r.choice(others)
        elif k < 0.96:
            s = r.choice(others)
            q["subject_type"] = s
            q["subject_relation"] = r.choice(names(s))
        else:
            bad = r.randrange(4)
            q["subject_type"] = USER
            if bad == 0:
                q["permission"] = "unknown_perm"
            elif bad == 1:
                q["resource"] = f"missing:{t[0]}1"
            elif bad == 2:
                q["subject_type"] = "missing"
            else:
                q["subject_type"] = r.choice(others)
                q["subject_relation"] = "unknown_rel"
        return q

    out: list[dict] = []
    seen: set = set()

    def add(q: dict) -> None:
        if caveat and r.random() < 0.6:
            ctx = r.choice(caveat["request"])
            if ctx is not None:
                q["context"] = ctx
        key = json.dumps(q, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(q)

    for _ in range(200):
        if len(out) >= 36:
            break
        add(lr() if r.random() < 0.5 else ls())
    users_of = [{"kind": "ls", "resource": f"{t}:{i}", "permission": perm, "subject_type": USER}
                for t in others for i in ids[t] for perm in outline[t]["permissions"]]
    for q in r.sample(users_of, min(16, len(users_of))):
        add(q)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--profile", choices=sorted(PROFILES), default="default")
    p.add_argument("--lookups", action="store_true", help="also the lookup candidates (`lookup_candidates`)")
    args = p.parse_args()
    for s in range(args.seed, args.seed + args.count):
        case = generate(s, args.profile)
        if args.lookups:
            case["lookup_candidates"] = lookup_candidates(s, case["schema"], case["relationships"])
        print(json.dumps(case, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
