//! Unit tests, one or more per construct of the schema language.

use super::*;

fn ok(source: &str) -> CompiledSchema {
    compile(source).unwrap_or_else(|e| {
        panic!(
            "expected {source:?} to compile, got: {}",
            e.render("test", source)
        )
    })
}

fn err(source: &str) -> Diagnostic {
    match compile(source) {
        Ok(_) => panic!("expected {source:?} to be rejected"),
        Err(e) => e.first().clone(),
    }
}

fn rewrite(schema: &CompiledSchema, def: &str, perm: &str) -> Rewrite {
    match &schema.relation(def, perm).expect("permission exists").body {
        RelationBody::Permission(r) => r.clone(),
        RelationBody::Direct(_) => panic!("{perm} is a relation"),
    }
}

fn cu(name: &str) -> Rewrite {
    Rewrite::Computed(name.to_string())
}

const BASE: &str = "definition user {}\n";

fn with_doc(body: &str) -> String {
    format!(
        "{BASE}definition doc {{\n\trelation aaa: user\n\trelation bbb: user\n\trelation ccc: user\n{body}\n}}"
    )
}

#[test]
fn precedence_plus_binds_tighter_than_and_than_minus() {
    let s = ok(&with_doc("\tpermission ppp = aaa - bbb + ccc"));
    assert_eq!(
        rewrite(&s, "doc", "ppp"),
        Rewrite::Exclusion(
            Box::new(cu("aaa")),
            Box::new(Rewrite::Union(vec![cu("bbb"), cu("ccc")]))
        )
    );
    let s = ok(&with_doc("\tpermission ppp = aaa + bbb & ccc"));
    assert_eq!(
        rewrite(&s, "doc", "ppp"),
        Rewrite::Intersection(vec![Rewrite::Union(vec![cu("aaa"), cu("bbb")]), cu("ccc")])
    );
}

#[test]
fn unions_and_intersections_flatten_exclusion_stays_binary() {
    let s = ok(&with_doc(
        "\tpermission ppp = aaa + (bbb + ccc)\n\tpermission qqq = aaa & bbb & ccc\n\tpermission rrr = aaa - bbb - ccc",
    ));
    assert_eq!(
        rewrite(&s, "doc", "ppp"),
        Rewrite::Union(vec![cu("aaa"), cu("bbb"), cu("ccc")])
    );
    assert_eq!(
        rewrite(&s, "doc", "qqq"),
        Rewrite::Intersection(vec![cu("aaa"), cu("bbb"), cu("ccc")])
    );
    assert_eq!(
        rewrite(&s, "doc", "rrr"),
        Rewrite::Exclusion(
            Box::new(Rewrite::Exclusion(Box::new(cu("aaa")), Box::new(cu("bbb")))),
            Box::new(cu("ccc"))
        )
    );
}

#[test]
fn single_term_is_a_one_child_union() {
    let s = ok(&with_doc("\tpermission ppp = aaa"));
    assert_eq!(rewrite(&s, "doc", "ppp"), Rewrite::Union(vec![cu("aaa")]));
}

#[test]
fn arrows_any_all_nil_and_self() {
    let s = ok(
        "use self\ndefinition user {\n\tpermission mine = self\n}\ndefinition doc {\n\trelation parent: doc\n\tpermission all = parent->all + parent.any(all) + parent.all(all) + nil\n}",
    );
    assert_eq!(
        rewrite(&s, "user", "mine"),
        Rewrite::Union(vec![Rewrite::SelfRef])
    );
    let arrow = |function| Rewrite::Arrow {
        tupleset: "parent".into(),
        computed: "all".into(),
        function,
    };
    assert_eq!(
        rewrite(&s, "doc", "all"),
        Rewrite::Union(vec![
            arrow(ArrowFunction::Arrow),
            arrow(ArrowFunction::Any),
            arrow(ArrowFunction::All),
            Rewrite::Nil
        ])
    );
    assert!(s.uses_self());
    assert!(format(&s).starts_with("use self\n\n"));
}

#[test]
fn relation_type_forms() {
    let s = ok(
        "use expiration\ncaveat cav(x int) { x > 1 }\ndefinition user {}\ndefinition group { relation member: user; }\ndefinition doc {\n\trelation rel: user | user:* | group#member | group#... | user with cav | group#member with expiration | user:* with cav and expiration\n}",
    );
    let types = s
        .relation("doc", "rel")
        .expect("relation")
        .allowed_types()
        .to_vec();
    let t = |type_name: &str, target: SubjectTarget, caveat: Option<&str>, expiration| {
        AllowedSubjectType {
            type_name: type_name.into(),
            target,
            caveat: caveat.map(Into::into),
            expiration,
        }
    };
    assert_eq!(
        types,
        vec![
            t("user", SubjectTarget::Object, None, false),
            t("user", SubjectTarget::Wildcard, None, false),
            t(
                "group",
                SubjectTarget::Relation("member".into()),
                None,
                false
            ),
            t("group", SubjectTarget::Object, None, false),
            t("user", SubjectTarget::Object, Some("cav"), false),
            t(
                "group",
                SubjectTarget::Relation("member".into()),
                None,
                true
            ),
            t("user", SubjectTarget::Wildcard, Some("cav"), true),
        ]
    );
    assert!(s.uses_expiration());
}

#[test]
fn prefixed_types_with_several_levels() {
    let s = ok(
        "definition org/team/user {}\ndefinition org/doc {\n\trelation viewer: org/team/user\n}",
    );
    assert!(s.definition("org/team/user").is_some());
    assert_eq!(
        s.relation("org/doc", "viewer")
            .expect("relation")
            .allowed_types()[0]
            .type_name,
        "org/team/user"
    );
}

#[test]
fn newline_ends_a_statement_after_an_identifier_but_not_after_an_operator() {
    ok(&with_doc("\tpermission ppp = aaa +\n\t\tbbb"));
    let d = err(&with_doc("\tpermission ppp = aaa\n\t\t+ bbb"));
    assert_eq!(d.kind, ErrorKind::Syntax);
}

#[test]
fn semicolons_and_one_line_bodies() {
    ok("definition user {}; definition doc { relation viewer: user; permission view = viewer; }");
    // Without `;`, the last statement before `}` is unterminated, as in SpiceDB.
    assert_eq!(
        err("definition user {}\ndefinition doc { relation viewer: user }").kind,
        ErrorKind::Syntax
    );
}

#[test]
fn doc_comments_attach_to_the_next_declaration() {
    let s = ok(
        "/** the user */\ndefinition user {}\n\ndefinition doc {\n\t// who can see\n\t/* and more */\n\trelation viewer: user // trailing, dropped\n\trelation owner: user\n}",
    );
    assert_eq!(
        s.definition("user").expect("user").doc.as_written(),
        ["/** the user */"]
    );
    let viewer = s.relation("doc", "viewer").expect("viewer");
    assert_eq!(
        viewer.doc.as_written(),
        ["// who can see", "/* and more */"]
    );
    assert!(s.relation("doc", "owner").expect("owner").doc.is_empty());
}

#[test]
fn caveats_with_every_parameter_type() {
    let s = ok(
        "caveat everything(a any, b bool, c string, d int, e uint, f double, g bytes, h duration, i timestamp, j list<int>, k map<string>, l ipaddress, m list<map<int>>) {\n\tb && a != null && c != \"}\" && d > 0 && e > 0u && f > 0.0 && size(g) > 0 && h > duration(\"1s\") && i > timestamp(\"2020-01-01T00:00:00Z\") && 1 in j && \"x\" in k && l.in_cidr(\"10.0.0.0/8\") && size(m) > 0\n}\ndefinition user {}",
    );
    let cav = s.caveat("everything").expect("caveat");
    assert_eq!(cav.parameters.len(), 13);
    assert_eq!(
        cav.parameters[12],
        (
            "m".to_string(),
            CaveatType::List(Box::new(CaveatType::Map(Box::new(CaveatType::Int))))
        )
    );
}

#[test]
fn map_and_filter_macros_type_check() {
    // SpiceDB accepts these; the macros expand to `list(dyn) + [x]`.
    ok(
        "caveat c(l list<int>, a int) {\n\tl.map(x, x + a).size() == 2 && l.filter(x, x > a).size() > 0\n}\ndefinition user {}",
    );
}

#[test]
fn optional_values_type_check() {
    // SpiceDB enables CEL's optional types; these are all accepted there.
    for body in [
        "m[?k].orValue(true)",
        "m.?k.orValue(true) && m.?k.hasValue()",
        "optional.of(n).value() + 1 == 2",
        "optional.none().orValue(n) == 1 && optional.ofNonZeroValue(n).hasValue()",
        "optional.of(n).or(optional.of(2)).value() == 1",
        "[?optional.none(), n].size() == 1 && {?'x': optional.of(n)}.x == 1",
        "l[?0].orValue(5) == 5 && mm.?a.?b.orValue(7) == 7",
        "mm.?a == optional.none()",
    ] {
        ok(&format!(
            "caveat c(m map<bool>, k string, n int, l list<int>, mm map<map<int>>) {{\n\t{body} && m == m && k == k && n == n && l == l && mm == mm\n}}\ndefinition user {{}}"
        ));
    }
    // ...and SpiceDB rejects these.
    for body in ["mm.?a.orValue('x') == 'x'", "optional.of(n)"] {
        let d = err(&format!(
            "caveat c(mm map<int>, n int) {{\n\t{body} && n == n && mm == mm\n}}\ndefinition user {{}}"
        ));
        assert_eq!(d.kind, ErrorKind::CaveatExpression, "{body}");
    }
    let d = err("caveat c(n int) {\n\toptional.of(n)\n}\ndefinition user {}");
    assert!(
        d.message.contains("found `optional_type(int)`"),
        "{}",
        d.message
    );
}

#[test]
fn use_flags_turn_words_into_keywords() {
    // Without `use expiration`, `expiration` is a caveat name.
    let d = err("definition user {}\ndefinition doc {\n\trelation viewer: user with expiration\n}");
    assert_eq!(d.kind, ErrorKind::ExpirationNotEnabled);
    // With it, `expiration` can no longer name a relation.
    let d =
        err("use expiration\ndefinition user {}\ndefinition doc {\n\trelation expiration: user\n}");
    assert_eq!(d.kind, ErrorKind::Syntax);
    // Without `use self`, `self` is an ordinary relation name, unknown here.
    assert_eq!(
        err("definition user {\n\tpermission mine = self\n}").kind,
        ErrorKind::SelfNotEnabled
    );
    assert_eq!(
        err("use frobnicate\ndefinition user {}").kind,
        ErrorKind::UnknownUseFlag
    );
    assert_eq!(
        err("definition user {}\nuse self").kind,
        ErrorKind::UseAfterDefinition
    );
}

#[test]
fn partials_are_spliced_under_use_partial() {
    let s = ok(
        "use partial\npartial viewable {\n\trelation viewer: user\n\tpermission view = viewer\n}\ndefinition user {}\ndefinition doc {\n\t...viewable\n\trelation owner: user\n}",
    );
    let names: Vec<&str> = s
        .definition("doc")
        .expect("doc")
        .relations
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, vec!["viewer", "view", "owner"]);
    assert_eq!(
        err("definition user {}\npartial p {}").kind,
        ErrorKind::Syntax
    );
}

#[test]
fn error_kinds_and_positions() {
    let cases: &[(&str, ErrorKind, (usize, usize))] = &[
        (
            "definition user {}\ndefinition doc {\n\trelation viewer: usr\n}",
            ErrorKind::UnknownDefinition,
            (3, 19),
        ),
        (
            "definition user {}\ndefinition doc {\n\trelation viewer: user\n\tpermission view = viewr\n}",
            ErrorKind::UnknownRelation,
            (4, 20),
        ),
        (
            "definition user {}\ndefinition user {}",
            ErrorKind::DuplicateName,
            (2, 12),
        ),
        (
            "definition user {}\ndefinition doc {\n\trelation viewer: user\n\trelation viewer: user\n}",
            ErrorKind::DuplicateRelation,
            (4, 11),
        ),
        (
            "definition user {}\ndefinition doc {\n\trelation viewer: user | user\n}",
            ErrorKind::DuplicateSubjectType,
            (3, 26),
        ),
        (
            "definition user {}\ndefinition group { relation member: user; }\ndefinition doc {\n\trelation viewer: group#membr\n}",
            ErrorKind::UnknownSubjectRelation,
            (4, 25),
        ),
        (
            "definition user {}\ndefinition group { relation member: user:*; }\ndefinition doc {\n\trelation viewer: group#member\n}",
            ErrorKind::WildcardThroughSubjectRelation,
            (4, 19),
        ),
        (
            "definition user {}\ndefinition doc {\n\trelation viewer: user with nope\n}",
            ErrorKind::UnknownCaveat,
            (3, 29),
        ),
        (
            "definition user { relation mee: user; }\ndefinition doc {\n\trelation parent: user\n\tpermission view = parent->mee\n\tpermission edit = view->mee\n}",
            ErrorKind::ArrowOnPermission,
            (5, 20),
        ),
        (
            "definition user { relation mee: user; }\ndefinition doc {\n\trelation parent: user:*\n\tpermission view = parent->mee\n}",
            ErrorKind::ArrowOnWildcard,
            (4, 20),
        ),
        (
            "definition user {}\ndefinition doc {\n\trelation parent: doc\n\tpermission view = parent->parent->view\n}",
            ErrorKind::NestedArrow,
            (4, 20),
        ),
        (
            "definition user {}\ndefinition doc {\n\trelation parent: doc\n\tpermission view = parent.some(view)\n}",
            ErrorKind::UnknownArrowFunction,
            (4, 27),
        ),
        (
            "definition user {}\ndefinition doc {\n\trelation viewer: user\n\tpermission aaa = bbb\n\tpermission bbb = aaa\n}",
            ErrorKind::PermissionCycle,
            (4, 13),
        ),
        (
            "definition user {}\ndefinition doc {\n\trelation ab: user\n}",
            ErrorKind::InvalidName,
            (3, 11),
        ),
        ("definition User {}", ErrorKind::InvalidName, (1, 12)),
        (
            "caveat cav(x int, x int) { x > 1 }",
            ErrorKind::DuplicateCaveatParameter,
            (1, 19),
        ),
        (
            "caveat cav(x integer) { x > 1 }",
            ErrorKind::UnknownCaveatType,
            (1, 14),
        ),
        (
            "caveat cav(x int) { x > }",
            ErrorKind::CaveatExpression,
            (1, 21),
        ),
        (
            "caveat cav(x int) { x + 1 }",
            ErrorKind::CaveatExpression,
            (1, 21),
        ),
        (
            "caveat cav(x int, y int) { x > 1 }",
            ErrorKind::UnusedCaveatParameter,
            (1, 19),
        ),
        (
            "definition user {\n\trelation viewer user\n}",
            ErrorKind::Syntax,
            (2, 18),
        ),
        (
            "definition user {\n\trelation viewer: user @\n}",
            ErrorKind::Syntax,
            (2, 24),
        ),
        ("definition user {", ErrorKind::Syntax, (1, 18)),
        (
            "use import\nimport \"other.zed\"\ndefinition user {}",
            ErrorKind::ImportNotSupported,
            (2, 1),
        ),
    ];
    for (source, kind, position) in cases {
        let d = err(source);
        assert_eq!(
            (d.kind, d.line_col(source)),
            (*kind, *position),
            "for {source:?}: {}",
            d.message
        );
    }
}

#[test]
fn several_errors_are_reported_at_once() {
    let source = "definition user {}\ndefinition doc {\n\trelation viewer: usr\n\tpermission view = viewr\n\tpermission edit = nope\n}";
    let errors = compile(source).expect_err("three errors");
    assert_eq!(errors.diagnostics.len(), 3);
}

#[test]
fn rendering_points_at_the_error() {
    let source = "definition user {}\ndefinition doc {\n\trelation viewer: usr\n}";
    let rendered = err(source).render("x.zed", source);
    assert!(
        rendered.starts_with("x.zed:3:19: error[unknown-definition]:"),
        "{rendered}"
    );
    assert!(rendered.contains("\trelation viewer: usr\n"), "{rendered}");
    assert!(rendered.contains("^^^"), "{rendered}");
}

#[test]
fn reachability_lists_subject_types_through_subject_sets_and_arrows() {
    let s = ok(
        "definition user {}\ndefinition group {\n\trelation member: user | group#member\n}\ndefinition folder {\n\trelation viewer: group#member | user:*\n}\ndefinition doc {\n\trelation parent: folder\n\tpermission view = parent->viewer\n}",
    );
    let reachable = s
        .reachability()
        .subject_types("doc", "view")
        .expect("doc#view");
    let has = |type_name: &str, target: SubjectTarget| {
        reachable.contains(&SubjectTypeRef {
            type_name: type_name.into(),
            target,
        })
    };
    assert!(has("user", SubjectTarget::Object));
    assert!(has("user", SubjectTarget::Wildcard));
    assert!(has("group", SubjectTarget::Relation("member".into())));
    let edges = s.reachability().entrypoints("folder", "viewer");
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].resource_type, "doc");
}

#[test]
fn hash_ignores_formatting_and_order() {
    let a = ok("definition user {}\ndefinition doc { relation viewer: user; }");
    let b = ok("definition doc {\n\trelation viewer: user\n}\n\n\ndefinition user {}");
    assert_eq!(a.hash(), b.hash());
    let c = ok("definition user {}\ndefinition doc { relation reader: user; }");
    assert_ne!(a.hash(), c.hash());
}

#[test]
fn printing_then_compiling_gives_the_same_schema() {
    let source = "use expiration\n/** c */\ncaveat cav(b int, a int) {\n\ta > b\n}\ndefinition user {}\ndefinition doc {\n\t/**\n\t * a long doc comment that goes over seventy characters in length, so it wraps\n\t */\n\trelation viewer: user | user with cav and expiration\n\t// why\n\trelation owner: user\n\tpermission view = (viewer - owner) - (owner & viewer) + nil\n}";
    let first = ok(source);
    let printed = format(&first);
    let second = ok(&printed);
    assert_eq!(first, second, "printed:\n{printed}");
    assert_eq!(format(&second), printed);
}

#[test]
fn long_chains_compile_without_deep_recursion() {
    let wide = format!(
        "definition user {{}}\ndefinition doc {{\n\trelation aaa: user\n\tpermission view = aaa{}\n}}",
        " + aaa".repeat(20_000)
    );
    let s = ok(&wide);
    match rewrite(&s, "doc", "view") {
        Rewrite::Union(children) => assert_eq!(children.len(), 20_001),
        other => panic!("expected a union, got {other:?}"),
    }
}

#[test]
fn nesting_beyond_the_limit_is_a_clear_error() {
    let deep = format!(
        "definition user {{}}\ndefinition doc {{\n\trelation aaa: user\n\tpermission view = {}aaa{}\n}}",
        "(".repeat(150),
        ")".repeat(150)
    );
    let d = err(&deep);
    assert_eq!(d.kind, ErrorKind::Syntax);
    assert!(d.message.contains("nests too deeply"), "{}", d.message);
    let rendered = d.render("deep.zed", &deep);
    assert!(
        rendered.lines().all(|l| l.chars().count() < 300),
        "{rendered}"
    );
    let chained = format!(
        "definition user {{}}\ndefinition doc {{\n\trelation aaa: user\n\tpermission view = aaa{}\n}}",
        " - aaa".repeat(200)
    );
    assert!(err(&chained).message.contains("too many `-`"));
}

#[test]
fn bracket_depth_is_bounded_before_parsing() {
    let deep = format!(
        "definition user {{}}\ndefinition doc {{\n\trelation aaa: user\n\tpermission view = {}aaa{}\n}}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let d = err(&deep);
    assert!(d.message.contains("nest too deeply"), "{}", d.message);
    // Brackets inside comments and strings do not count.
    ok(&format!(
        "// {}\ndefinition user {{}}\ncaveat cav(a string) {{ a == \"{}\" }}",
        "(".repeat(500),
        "{".repeat(500)
    ));
}

#[test]
fn doc_comments_keep_their_written_form_and_print_canonically() {
    let source = "//tight\n/**\n     * indented\n     */\ndefinition user {}";
    let s = ok(source);
    // As SpiceDB stores them: delimiters kept, each line trimmed.
    assert_eq!(
        s.definition("user").expect("user").doc.as_written(),
        ["//tight", "/**\n* indented\n*/"]
    );
    let printed = format(&s);
    assert_eq!(printed, "// tight\n/** indented */\ndefinition user {}");
    // Equal as printed, so the round trip holds.
    assert_eq!(ok(&printed), s);
}
