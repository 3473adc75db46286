//! The `trellis` binary: parse the command line (and `--config` file), set
//! up logging, and run the command.

use std::process::ExitCode;

mod cli;

#[tokio::main]
async fn main() -> ExitCode {
    let started = cli::Cli::parse_with_config_file().and_then(|args| {
        let telemetry = trellis::telemetry::logging::init(&args.log_settings())?;
        Ok((args, telemetry))
    });
    // The guard lives to the end of `main`, so exported spans are flushed.
    let (args, _telemetry) = match started {
        Ok(started) => started,
        Err(error) => return fail(&error),
    };
    match cli::run(args).await {
        Ok(code) => code,
        Err(error) => fail(&error),
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(2)
}
