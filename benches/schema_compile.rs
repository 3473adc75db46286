//! Compiling a large generated schema: 2,000 definitions with relations,
//! subject sets, arrows and every set operator. Goal: under 50 ms.

use criterion::{Criterion, criterion_group, criterion_main};

/// A schema of `n` resource definitions over users and nested groups, each
/// using unions, intersections, exclusions and arrows to its parent.
fn generated_schema(n: usize) -> String {
    let mut s = String::from(
        "definition user {}\n\ndefinition group {\n\trelation member: user | group#member\n}\n",
    );
    for i in 0..n {
        let parent = if i == 0 {
            "group".to_string()
        } else {
            format!("res{}", i - 1)
        };
        let parent_view = if i == 0 { "member" } else { "view" };
        s.push_str(&format!(
            "\n/** resource kind {i} */\ndefinition res{i} {{\n\trelation parent: {parent}\n\trelation owner: user\n\trelation editor: user | group#member\n\trelation viewer: user | user:* | group#member\n\trelation banned: user\n\tpermission edit = owner + editor + parent->{parent_view}\n\tpermission view = (viewer + edit) - banned\n\tpermission audit = edit & viewer\n}}\n"
        ));
    }
    s
}

fn compile_2000_definitions(c: &mut Criterion) {
    let source = generated_schema(2000);
    c.bench_function("compile 2000 definitions", |b| {
        b.iter(|| {
            trellis::schema::compile(std::hint::black_box(&source))
                .expect("generated schema compiles")
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = compile_2000_definitions
}
criterion_main!(benches);
