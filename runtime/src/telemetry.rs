//! Logs and metrics for the server processes (coordinator and worker).
//!
//! Logs go to stderr through `tracing`: text for people, or one JSON object
//! per line (with the span fields: job, stage, track, lease) for a log
//! pipeline. Metrics are served in Prometheus' text format at
//! `http://<metrics-listen>/metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use metrics_exporter_prometheus::PrometheusBuilder;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The logging and metrics options both server binaries take.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "LACQUER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log lines as text or JSON.
    #[arg(long, env = "LACQUER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A server process from start to exit: logs started, an async runtime,
/// metrics served when asked, then `run` to its end. Exit status 0, or 2
/// with the error logged.
pub fn run_process<F: Future<Output = anyhow::Result<()>>>(options: &Options, run: impl FnOnce() -> F) -> ExitCode {
    init_logs(options.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        if let Some(listen) = options.metrics_listen {
            serve_metrics(listen)?;
        }
        run().await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(2)
        }
    }
}

/// Starts logging to stderr; `RUST_LOG` filters (default `info`).
fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    // A second initialisation (tests in one process) keeps the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
}

/// Seconds buckets for task and request durations.
const SECONDS_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// Buckets for x-realtime (seconds of audio per second of work).
const REALTIME_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];

/// Serves `/metrics` on `listen` from now on. Must run inside a tokio runtime.
fn serve_metrics(listen: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Suffix("_realtime".into()), REALTIME_BUCKETS)?
        .install()
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {listen}: {e}"))
}
