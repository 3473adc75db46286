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

Usage:  generate.py [--seed N] [--count K]    print K cases starting at seed N as JSON
"""

from __future__ import annotations

import argparse
import json
import random
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


class Gen:
    def __init__(self, seed: int):
        self.seed = seed
        self.rng = random.Random(seed)

    # -- schema -----------------------------------------------------------------------------

    def schema(self) -> None:
        r = self.rng
        n_other = r.choice([1, 2, 2, 3, 3])
        names = r.sample(TYPE_POOL, n_other)
        self.defs: list[Definition] = [Definition(USER)] + [Definition(n) for n in names]
        self.by_name = {d.name: d for d in self.defs}
        self.others = self.defs[1:]
        self.caveat = r.choice(CAVEATS) if r.random() < 0.25 else None
        self.expiration = r.random() < 0.12
        self.cyclic = r.random() < 0.35

        # pass 1: names and wildcard flags, so entries may point at any definition
        for d in self.others:
            d.relations = sorted(r.sample(RELATION_POOL, r.choice([1, 2, 2, 3, 3, 4])), key=RELATION_POOL.index)
            d.permissions = r.sample(PERMISSION_POOL, r.choice([1, 1, 2, 2, 3]))
            for rel in d.relations:
                d.wild[rel] = r.random() < 0.22
        # pass 2: allowed subject types
        for d in self.others:
            for rel in d.relations:
                d.entries[rel] = self.entries_for(d, rel)
        # pass 3: permission expressions
        for d in self.others:
            for i, perm in enumerate(d.permissions):
                d.exprs[perm] = self.permission_expr(d, i)

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
        op = weighted(r, [(0.42, "+"), (0.30, "&"), (0.28, "-")])
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
        slots = [(3.0 if e.caveat else 1.0, (d, rel, e))
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


def generate(seed: int) -> dict:
    """One case: {seed, schema, relationships, candidates, cyclic}. Deterministic in `seed`."""
    g = Gen(seed)
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=1)
    args = p.parse_args()
    for s in range(args.seed, args.seed + args.count):
        print(json.dumps(generate(s), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
