//! The reference file is exactly the defaults and names every flag; file
//! values sit below flags and the environment; bad files are named.

use std::path::PathBuf;
use std::sync::Mutex;

use clap::CommandFactory as _;

use super::*;
use crate::cli::{Cli, Command as CliCommand, ServeArgs};

/// Parsing reads the environment, and one test sets a variable: they take
/// turns.
static ENVIRONMENT: Mutex<()> = Mutex::new(());

fn reference() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/reference.toml")
}

fn serve_args(args: &[&str]) -> Result<ServeArgs, ConfigFileError> {
    let args = std::iter::once("trellis")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect();
    let cli: Cli = parse(args)?;
    match cli.command {
        CliCommand::Serve(serve) => Ok(*serve),
        other => panic!("not serve: {other:?}"),
    }
}

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("trellis-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write the temp file");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn serve_command() -> Command {
    Cli::command()
        .find_subcommand(SERVE)
        .expect("serve")
        .clone()
}

#[test]
fn the_reference_file_sets_every_flag_to_its_default() {
    let _turn = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    let text = std::fs::read_to_string(reference()).expect("config/reference.toml");
    let table: toml::Table = text.parse().expect("the reference file parses");
    let serve = serve_command();
    let settable: Vec<&Arg> = serve
        .get_arguments()
        .filter(|arg| is_file_settable(arg))
        .collect();
    for arg in &settable {
        let key = arg.get_long().expect("settable flags are long");
        let value = table
            .get(key)
            .unwrap_or_else(|| panic!("config/reference.toml lacks `{key}`"));
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            flag_values(value).expect("a flag value"),
            defaults,
            "`{key}` in config/reference.toml is not its default"
        );
        let env = arg
            .get_env()
            .unwrap_or_else(|| panic!("--{key} has no environment variable"))
            .to_string_lossy();
        assert!(
            comment_above(&text, key).contains(env.as_ref()),
            "the comment above `{key}` does not name {env}"
        );
    }
    assert_eq!(table.len(), settable.len(), "keys that are not flags");

    let from_file = serve_args(&["serve", "--config", reference().to_str().expect("utf-8")])
        .expect("the reference file applies");
    let from_defaults = serve_args(&["serve"]).expect("defaults");
    assert_eq!(
        format!(
            "{:?}",
            ServeArgs {
                config: None,
                ..from_file
            }
        ),
        format!("{from_defaults:?}")
    );
}

/// The comment lines right above `key = …`.
fn comment_above(text: &str, key: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.split('=').next().map(str::trim) == Some(key))
        .unwrap_or_else(|| panic!("no line sets `{key}`"));
    lines[..at]
        .iter()
        .rev()
        .take_while(|line| line.starts_with('#'))
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let _turn = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    let file = TempFile::new(
        "precedence",
        r#"
grpc-addr = "127.0.0.1:7001"
watch-api-heartbeat = "7s"
datastore-watch-buffer-length = 7
dispatch-cache-enabled = false
grpc-preshared-key = ["first", "second"]
"#,
    );
    // SAFETY: every test that parses holds ENVIRONMENT, so nothing reads
    // the environment while it changes.
    unsafe { std::env::set_var("TRELLIS_DATASTORE_WATCH_BUFFER_LENGTH", "9") };
    let parsed = serve_args(&[
        "serve",
        "--config",
        file.path(),
        "--grpc-addr",
        "127.0.0.1:7002",
    ]);
    // SAFETY: as above.
    unsafe { std::env::remove_var("TRELLIS_DATASTORE_WATCH_BUFFER_LENGTH") };
    let args = parsed.expect("the file applies");
    assert_eq!(
        args.grpc_addr.to_string(),
        "127.0.0.1:7002",
        "flag over file"
    );
    assert_eq!(
        args.datastore_watch_buffer_length, 9,
        "environment over file"
    );
    assert_eq!(args.watch_api_heartbeat, std::time::Duration::from_secs(7));
    assert!(!args.dispatch_cache_enabled);
    assert_eq!(args.grpc_preshared_key, ["first", "second"]);
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_the_file() {
    let _turn = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    let unknown = TempFile::new("unknown", "grpc-adr = \":1\"\n");
    let error = serve_args(&["serve", "--config", unknown.path()])
        .expect_err("unknown key")
        .to_string();
    assert!(
        error.contains("`grpc-adr`") && error.contains(unknown.path()),
        "{error}"
    );

    let nested = TempFile::new("nested", "[grpc]\naddr = \":1\"\n");
    let error = serve_args(&["serve", "--config", nested.path()])
        .expect_err("a table")
        .to_string();
    assert!(error.contains("`grpc`"), "{error}");

    let itself = TempFile::new("itself", "config = \"other.toml\"\n");
    assert!(serve_args(&["serve", "--config", itself.path()]).is_err());

    let broken = TempFile::new("broken", "grpc-addr = \n");
    let error = serve_args(&["serve", "--config", broken.path()])
        .expect_err("not TOML")
        .to_string();
    assert!(error.contains("parsing the config file"), "{error}");

    let error = serve_args(&["serve", "--config", "/no/such/trellis.toml"])
        .expect_err("missing")
        .to_string();
    assert!(error.contains("/no/such/trellis.toml"), "{error}");
}

#[test]
fn secrets_from_the_file_stay_out_of_help() {
    let _turn = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
    let file = TempFile::new(
        "secret",
        "grpc-preshared-key = [\"hunter2\"]\ndatastore-conn-uri = \"postgres://u:s3cret@db/x\"\n",
    );
    let command = with_file_defaults(Cli::command(), &file.0).expect("applies");
    let mut serve = command.find_subcommand(SERVE).expect("serve").clone();
    let help = serve.render_long_help().to_string();
    assert!(
        !help.contains("hunter2") && !help.contains("s3cret"),
        "{help}"
    );
}
