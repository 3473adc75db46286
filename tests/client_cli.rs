//! The zed-like client commands as a user runs them: the built `trellis`
//! binary against a live server started here (plaintext, with a preshared
//! key), checking what it prints and how it exits.

#[path = "common/server.rs"]
mod server;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use server::{KEY, TestServer};
use trellis::config::Config;
use trellis::datastore::RevisionConfig;

const SCHEMA: &str = r#"
use expiration

definition user {}

caveat weekday(day string) {
    day != "saturday" && day != "sunday"
}

definition group {
    relation member: user
}

definition document {
    relation owner: user
    relation viewer: user | user with weekday | user with expiration | group#member
    permission view = viewer + owner
}
"#;

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `trellis` against one server, with the key in `TRELLIS_TOKEN`.
struct Cli {
    endpoint: String,
    dir: PathBuf,
}

impl Cli {
    fn new(server: &TestServer, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("trellis-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self {
            endpoint: server.addr.to_string(),
            dir,
        }
    }

    /// A file in this test's folder with `text` in it.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write test file");
        path.display().to_string()
    }

    fn run_with(&self, args: &[&str], token: &str, stdin: Option<&str>) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_trellis"));
        command
            .args(args)
            .args(["--endpoint", &self.endpoint, "--insecure"])
            .env("TRELLIS_TOKEN", token)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("trellis starts");
        if let Some(text) = stdin {
            use std::io::Write as _;
            let mut pipe = child.stdin.take().expect("stdin piped");
            pipe.write_all(text.as_bytes()).expect("stdin written");
        }
        let output = child.wait_with_output().expect("trellis runs");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, KEY, None)
    }

    /// Runs a command that must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(0),
            "trellis {args:?} failed:\nstdout: {}\nstderr: {}",
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    /// Runs a command that must fail; its standard error.
    fn fails(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_ne!(
            run.code,
            Some(0),
            "trellis {args:?} should fail: {}",
            run.stdout
        );
        run
    }

    /// Writes the test schema; the ZedToken printed.
    fn write_schema(&self) -> String {
        let path = self.file("schema.zed", SCHEMA);
        self.ok(&["schema", "write", &path]).trim().to_string()
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_write_prints_a_token_and_read_prints_the_schema() {
    let server = TestServer::start_default().await;
    let cli = Cli::new(&server, "schema");
    let token = cli.write_schema();
    assert!(!token.is_empty() && !token.contains(' '), "{token}");
    let schema = cli.ok(&["schema", "read"]);
    assert!(schema.contains("definition document {"), "{schema}");
    assert!(schema.contains("caveat weekday(day string)"), "{schema}");

    // From standard input, with `-`.
    let run = cli.run_with(
        &["schema", "write", "-"],
        KEY,
        Some("definition user {}\ndefinition folder {\n\trelation reader: user\n}\n"),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(cli.ok(&["schema", "read"]).contains("definition folder"));

    // The offline subcommands of the same group still work.
    let path = cli.file("local.zed", SCHEMA);
    let check = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["schema", "check", &path])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&check.stdout).contains(": ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relationships_are_created_touched_read_and_deleted() {
    let server = TestServer::start_default().await;
    let cli = Cli::new(&server, "relationships");
    cli.write_schema();
    let token = cli.ok(&[
        "relationship",
        "create",
        "document:1",
        "viewer",
        "user:alice",
    ]);
    assert!(!token.trim().is_empty());
    cli.ok(&[
        "relationship",
        "create",
        "document:1",
        "viewer",
        "group:eng#member",
    ]);
    cli.ok(&["relationship", "create", "document:2", "owner", "user:bob"]);

    // Creating it again is the server's ALREADY_EXISTS; touching is fine.
    let again = cli.fails(&[
        "relationship",
        "create",
        "document:1",
        "viewer",
        "user:alice",
    ]);
    assert!(again.stderr.contains("ALREADY_EXISTS"), "{}", again.stderr);
    cli.ok(&[
        "relationship",
        "touch",
        "document:1",
        "viewer",
        "user:alice",
        "--expiration-time",
        "2100-01-01T00:00:00Z",
    ]);

    let all = cli.ok(&["relationship", "read", "document", "--consistency-full"]);
    assert_eq!(
        lines(&all),
        [
            "document:1 viewer group:eng#member",
            "document:1 viewer user:alice[expiration:2100-01-01T00:00:00Z]",
            "document:2 owner user:bob",
        ]
    );
    let by_subject = cli.ok(&[
        "relationship",
        "read",
        "document",
        "--subject-filter",
        "user:bob",
        "--consistency-full",
    ]);
    assert_eq!(lines(&by_subject), ["document:2 owner user:bob"]);
    let by_relation = cli.ok(&[
        "relationship",
        "read",
        "document:1",
        "viewer",
        "group",
        "--consistency-full",
    ]);
    assert_eq!(lines(&by_relation), ["document:1 viewer group:eng#member"]);

    cli.ok(&[
        "relationship",
        "delete",
        "document:1",
        "viewer",
        "user:alice",
    ]);
    let after = cli.ok(&["relationship", "read", "document:1", "--consistency-full"]);
    assert_eq!(lines(&after), ["document:1 viewer group:eng#member"]);

    // Many from standard input, in batches: what `read` prints, or the
    // relationship syntax; `read | delete` removes what was read.
    let piped = cli.run_with(
        &["relationship", "create", "--batch-size", "2"],
        KEY,
        Some("document:7 viewer user:x\ndocument:8#viewer@user:y\n// comment\ndocument:9 owner user:z\n"),
    );
    assert_eq!(piped.code, Some(0), "{}", piped.stderr);
    let read = cli.ok(&["relationship", "read", "document", "--consistency-full"]);
    assert_eq!(read.lines().count(), 5, "{read}");
    let deleted = cli.run_with(&["relationship", "delete"], KEY, Some(&read));
    assert_eq!(deleted.code, Some(0), "{}", deleted.stderr);
    let none = cli.ok(&[
        "relationship",
        "read",
        "document",
        "--consistency-at-least",
        deleted.stdout.trim(),
    ]);
    assert_eq!(none, "");

    // Two of the three arguments is an error, not a read of stdin.
    let partial = cli.fails(&["relationship", "create", "document:1", "viewer"]);
    assert!(partial.stderr.contains("<SUBJECT>"), "{}", partial.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_delete_needs_force_beyond_its_limit() {
    let server = TestServer::start_default().await;
    let cli = Cli::new(&server, "bulk-delete");
    cli.write_schema();
    let rels = cli.file(
        "rels.txt",
        "document:1#viewer@user:a\ndocument:2#viewer@user:a\ndocument:3#viewer@user:a\ndocument:3#owner@user:b\n",
    );
    cli.ok(&["import", &rels]);

    let refused = cli.fails(&[
        "relationship",
        "bulk-delete",
        "document",
        "viewer",
        "--optional-limit",
        "2",
    ]);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    let token = cli.ok(&[
        "relationship",
        "bulk-delete",
        "document",
        "viewer",
        "--optional-limit",
        "2",
        "--force",
    ]);
    let left = cli.ok(&[
        "relationship",
        "read",
        "document",
        "--consistency-at-least",
        token.trim(),
    ]);
    assert_eq!(lines(&left), ["document:3 owner user:b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_answer_true_false_and_caveated() {
    let server = TestServer::start_default().await;
    let cli = Cli::new(&server, "check");
    cli.write_schema();
    cli.ok(&[
        "relationship",
        "create",
        "document:1",
        "owner",
        "user:alice",
    ]);
    let token = cli.ok(&[
        "relationship",
        "create",
        "document:1",
        "viewer",
        "user:carol",
        "--caveat",
        "weekday",
    ]);
    let token = token.trim();
    let check = |subject: &str, extra: &[&str]| {
        let mut args = vec![
            "permission",
            "check",
            "document:1",
            "view",
            subject,
            "--consistency-at-least",
            token,
        ];
        args.extend_from_slice(extra);
        cli.run(&args)
    };
    assert_eq!(check("user:alice", &[]).stdout, "true\n");
    let no = check("user:bob", &[]);
    assert_eq!((no.stdout.as_str(), no.code), ("false\n", Some(0)));
    assert_eq!(
        check("user:carol", &[]).stdout,
        "caveated (missing context: day)\n"
    );
    assert_eq!(
        check("user:carol", &["--caveat-context", r#"{"day":"monday"}"#]).stdout,
        "true\n"
    );
    assert_eq!(
        check("user:carol", &["--caveat-context", r#"{"day":"sunday"}"#]).stdout,
        "false\n"
    );

    // --explain draws the server's debug trace: the root evaluated with the
    // given context, the caveated viewer relationship below it.
    // A write first, so that the check reads a revision nothing is cached at.
    cli.ok(&["relationship", "touch", "document:2", "owner", "user:alice"]);
    let explained = cli.run(&[
        "permission",
        "check",
        "document:1",
        "view",
        "user:carol",
        "--consistency-full",
        "--explain",
        "--caveat-context",
        r#"{"day":"monday"}"#,
    ]);
    let explained: Vec<&str> = explained.stdout.lines().collect();
    assert_eq!(explained.first(), Some(&"true"), "{explained:?}");
    assert!(
        explained
            .get(1)
            .is_some_and(|l| l.starts_with("document:1#view@user:carol => true (caveat weekday)")),
        "{explained:?}"
    );
    assert!(
        explained
            .iter()
            .any(|l| l.contains("document:1#viewer@user:carol => caveated (caveat weekday)")),
        "{explained:?}"
    );

    // --error-on-no-permission: exit 1 unless the answer is an unconditional yes.
    assert_eq!(
        check("user:alice", &["--error-on-no-permission"]).code,
        Some(0)
    );
    assert_eq!(
        check("user:bob", &["--error-on-no-permission"]).code,
        Some(1)
    );
    assert_eq!(
        check("user:carol", &["--error-on-no-permission"]).code,
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_and_lookups_print_trees_and_lists() {
    let server = TestServer::start_default().await;
    let cli = Cli::new(&server, "lookups");
    cli.write_schema();
    let rels = cli.file(
        "rels.txt",
        "document:1#viewer@group:eng#member\ndocument:1#owner@user:alice\n\
         group:eng#member@user:bob\ndocument:2#viewer@user:bob[weekday]\n",
    );
    cli.ok(&["import", &rels]);

    let tree = cli.ok(&[
        "permission",
        "expand",
        "view",
        "document:1",
        "--consistency-full",
    ]);
    let expected = [
        "document:1->view",
        "└── union",
        "    ├── document:1->viewer",
        "    │   └── group:eng->member",
        "    └── document:1->owner",
        "        └── user:alice",
    ];
    assert_eq!(tree.lines().collect::<Vec<_>>(), expected, "{tree}");

    let resources = cli.ok(&[
        "permission",
        "lookup-resources",
        "document",
        "view",
        "user:bob",
        "--consistency-full",
    ]);
    assert_eq!(
        lines(&resources),
        ["1", "2 caveated (missing context: day)"]
    );
    let subjects = cli.ok(&[
        "permission",
        "lookup-subjects",
        "document:1",
        "view",
        "user",
        "--consistency-full",
    ]);
    assert_eq!(lines(&subjects), ["user:alice", "user:bob"]);
    let sets = cli.ok(&[
        "permission",
        "lookup-subjects",
        "document:1",
        "viewer",
        "group#member",
        "--consistency-full",
    ]);
    assert_eq!(lines(&sets), ["group:eng"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_flags_pick_the_revision() {
    // Quantization off: minimize_latency reads head, so its answer is
    // certain too (which token each flag sends is unit-tested).
    let revisions = RevisionConfig {
        quantization: std::time::Duration::ZERO,
        ..RevisionConfig::default()
    };
    let server = TestServer::start(Config::default(), revisions).await;
    let cli = Cli::new(&server, "consistency");
    let before = cli.write_schema();
    let after = cli.ok(&[
        "relationship",
        "create",
        "document:1",
        "owner",
        "user:alice",
    ]);
    let check = |flag: &[&str]| {
        let mut args = vec!["permission", "check", "document:1", "view", "user:alice"];
        args.extend_from_slice(flag);
        cli.ok(&args)
    };
    assert_eq!(check(&["--consistency-at-exactly", &before]), "false\n");
    assert_eq!(check(&["--consistency-at-exactly", after.trim()]), "true\n");
    assert_eq!(check(&["--consistency-at-least", after.trim()]), "true\n");
    assert_eq!(check(&["--consistency-full"]), "true\n");
    assert_eq!(check(&["--consistency-min-latency"]), "true\n");
    assert_eq!(check(&[]), "true\n");

    let both = cli.fails(&[
        "permission",
        "check",
        "document:1",
        "view",
        "user:alice",
        "--consistency-full",
        "--consistency-at-least",
        &before,
    ]);
    assert_eq!(both.code, Some(2));
    assert!(
        both.stderr.contains("--consistency-full"),
        "{}",
        both.stderr
    );

    let garbage = cli.fails(&[
        "permission",
        "check",
        "document:1",
        "view",
        "user:alice",
        "--consistency-at-least",
        "nonsense",
    ]);
    assert!(
        garbage.stderr.contains("INVALID_ARGUMENT"),
        "{}",
        garbage.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_protobuf_json() {
    let server = TestServer::start_default().await;
    let cli = Cli::new(&server, "json");
    cli.write_schema();
    let written: serde_json::Value = serde_json::from_str(&cli.ok(&[
        "relationship",
        "create",
        "document:1",
        "owner",
        "user:alice",
        "--json",
    ]))
    .expect("write response is JSON");
    let token = written["writtenAt"]["token"]
        .as_str()
        .expect("token")
        .to_string();

    let check: serde_json::Value = serde_json::from_str(&cli.ok(&[
        "permission",
        "check",
        "document:1",
        "view",
        "user:alice",
        "--consistency-at-least",
        &token,
        "--json",
    ]))
    .expect("check response is JSON");
    assert_eq!(check["permissionship"], "PERMISSIONSHIP_HAS_PERMISSION");

    // Streams: one JSON object per line.
    let read = cli.ok(&[
        "relationship",
        "read",
        "document",
        "--consistency-full",
        "--json",
    ]);
    let first: serde_json::Value =
        serde_json::from_str(read.lines().next().expect("one line")).expect("a JSON line");
    assert_eq!(first["relationship"]["resource"]["objectId"], "1");
    assert_eq!(
        first["relationship"]["subject"]["object"]["objectType"],
        "user"
    );

    let schema: serde_json::Value =
        serde_json::from_str(&cli.ok(&["schema", "read", "--json"])).expect("schema JSON");
    assert!(
        schema["schemaText"]
            .as_str()
            .expect("text")
            .contains("definition user")
    );
    let tree: serde_json::Value = serde_json::from_str(&cli.ok(&[
        "permission",
        "expand",
        "view",
        "document:1",
        "--consistency-full",
        "--json",
    ]))
    .expect("expand JSON");
    assert_eq!(tree["treeRoot"]["expandedRelation"], "view");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_round_trips() {
    let source = TestServer::start_default().await;
    let cli = Cli::new(&source, "export");
    let input = cli.file(
        "input.yaml",
        &format!(
            "schema: |-\n{}\nrelationships: |-\n  document:1#owner@user:alice\n  \
             document:1#viewer@group:eng#member\n  group:eng#member@user:bob\n  \
             document:2#viewer@user:carol[weekday:{{\"day\":\"monday\"}}]\n  \
             document:3#viewer@user:dan[expiration:2100-01-01T00:00:00Z]\n",
            SCHEMA
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    );
    let imported = cli.ok(&["import", &input]);
    assert!(imported.contains("5 relationships imported"), "{imported}");

    let exported = cli.dir.join("exported.yaml").display().to_string();
    assert!(
        cli.ok(&["export", &exported])
            .contains("5 relationships exported")
    );
    let first = std::fs::read_to_string(&exported).expect("export written");
    assert!(
        first.contains("document:2#viewer@user:carol[weekday:{\"day\":\"monday\"}]"),
        "{first}"
    );

    // Into a fresh server, then out again: the same file.
    let target = TestServer::start_default().await;
    let again = Cli::new(&target, "reimport");
    again.ok(&["import", &exported]);
    let second = again.ok(&["export"]);
    assert_eq!(second, first);

    // The fresh server answers from the imported data.
    assert_eq!(
        again.ok(&[
            "permission",
            "check",
            "document:1",
            "view",
            "user:bob",
            "--consistency-full"
        ]),
        "true\n"
    );

    // Importing the same relationships twice is refused, all or nothing.
    let twice = again.fails(&["import", &exported, "--schema=false"]);
    assert!(twice.stderr.contains("ALREADY_EXISTS"), "{}", twice.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_files_are_named() {
    let server = TestServer::start_default().await;
    let cli = Cli::new(&server, "bad-args");
    let run = cli.fails(&["permission", "check", "document", "view", "user:alice"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("'document'")
            && run.stderr.contains("<RESOURCE>")
            && run.stderr.contains("type:id"),
        "{}",
        run.stderr
    );
    let caveat = cli.fails(&[
        "relationship",
        "create",
        "document:1",
        "viewer",
        "user:a",
        "--caveat",
        "weekday:[1]",
    ]);
    assert!(caveat.stderr.contains("--caveat"), "{}", caveat.stderr);
    let time = cli.fails(&[
        "relationship",
        "touch",
        "document:1",
        "viewer",
        "user:a",
        "--expiration-time",
        "soon",
    ]);
    assert!(time.stderr.contains("--expiration-time"), "{}", time.stderr);

    let bad_line = cli.file(
        "bad.txt",
        "document:1#viewer@user:a\ndocument:1 viewer user:b\n",
    );
    let import = cli.fails(&["import", &bad_line]);
    assert!(
        import.stderr.contains("bad.txt: relationship line 2"),
        "{}",
        import.stderr
    );

    let missing = cli.fails(&["schema", "write", "/no/such/schema.zed"]);
    assert!(
        missing.stderr.contains("/no/such/schema.zed"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_print_their_code_and_message() {
    let server = TestServer::start_default().await;
    let cli = Cli::new(&server, "errors");
    let wrong = cli.run_with(&["schema", "read"], "not-the-key", None);
    assert_ne!(wrong.code, Some(0));
    assert!(
        wrong
            .stderr
            .contains("ReadSchema failed: PERMISSION_DENIED"),
        "{}",
        wrong.stderr
    );
    assert!(!wrong.stderr.contains("not-the-key"), "{}", wrong.stderr);

    let unknown = cli.fails(&[
        "permission",
        "check",
        "nothing:1",
        "view",
        "user:a",
        "--consistency-full",
    ]);
    assert!(
        unknown.stderr.contains("FAILED_PRECONDITION") || unknown.stderr.contains("NOT_FOUND"),
        "{}",
        unknown.stderr
    );

    // The endpoint and the token also come from the environment.
    let from_env = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["schema", "read", "--insecure"])
        .env("TRELLIS_ENDPOINT", &cli.endpoint)
        .env("TRELLIS_TOKEN", "not-the-key")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&from_env.stderr);
    assert!(stderr.contains("PERMISSION_DENIED"), "{stderr}");

    // Nobody listening: the connection error names the endpoint.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let closed = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let run = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["schema", "read", "--insecure", "--endpoint", &closed])
        .output()
        .expect("runs");
    assert_ne!(run.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!("connecting to {closed}")),
        "{stderr}"
    );
}
