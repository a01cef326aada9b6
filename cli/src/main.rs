//! `lacquer`: master whole albums consistently.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod analyze;
mod master;
mod remote;
mod validate;

/// Master whole albums consistently: every song matched in loudness,
/// warmth and tone, never squashed.
#[derive(Debug, Parser)]
#[command(name = "lacquer", version, about, long_about = None, after_help = EXIT_STATUSES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    s3: lacquer_runtime::stores::S3Options,
}

/// What every command's exit status means (the README says the same).
const EXIT_STATUSES: &str = "Exit status: 0 done (valid, or delivered); 1 the manifest has problems, each printed \
with its field, line and column; 2 the command could not run (unreadable manifest file, bad arguments, storage or \
coordinator unreachable); 3 the album was not finished (a track failed in `master`, or the job failed or was \
cancelled for `submit --wait` and `watch`)";

#[derive(Debug, Subcommand)]
enum Command {
    /// Check an album manifest and every file it names, without touching
    /// the audio: prints the tracks, stems, formats, rates and durations, or
    /// every problem found (exit status 1).
    Validate(validate::Args),
    /// Master an album on this machine: mix and master every track, match
    /// loudness, warmth and tone across the album, write every deliverable
    /// and a report. Finished work is reused when nothing it depends on
    /// changed.
    Master(master::Args),
    /// Measure audio files: integrated loudness, loudness range, true peak,
    /// PLR, warmth (150–600 Hz against 2–8 kHz), spectral tilt and stereo
    /// width, as a table or as JSON with the 1/3-octave spectrum.
    Analyze(analyze::Args),
    /// Send an album manifest to a coordinator (`--wait` follows the job to its end).
    Submit(remote::SubmitArgs),
    /// Follow a job on a coordinator until it ends, with its progress.
    Watch(remote::JobArgs),
    /// Show a job on a coordinator and its tasks.
    Status(remote::JobArgs),
    /// List your jobs on a coordinator.
    List(remote::ListArgs),
    /// Cancel a job; running workers stop at their next heartbeat.
    Cancel(remote::JobArgs),
    /// Print a finished job's report.json.
    Report(remote::JobArgs),
}

fn main() -> ExitCode {
    lacquer_runtime::share_one_heap();
    let cli = Cli::parse();
    if let Err(error) = lacquer_pipelines::check_cpu() {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Validate(args) => validate::run(args, cli.s3).await,
            Command::Analyze(args) => analyze::run(args, cli.s3).await,
            Command::Master(args) => master::run(args, cli.s3).await,
            Command::Submit(args) => remote::submit(args).await,
            Command::Watch(args) => remote::watch(args).await,
            Command::Status(args) => remote::status(args).await,
            Command::List(args) => remote::list(args).await,
            Command::Cancel(args) => remote::cancel(args).await,
            Command::Report(args) => remote::report(args).await,
        }
    });
    match result {
        Ok(code) => code,
        // A reader that stopped early (`| head`) is not an error of ours.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}
