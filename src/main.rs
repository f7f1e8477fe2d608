//! The `sse-bridge` binary: parse the command line, set up logging, load and validate the
//! configuration, then hand over to [`sse_bridge::run`] (SIGTERM/SIGINT drain and stop;
//! SIGHUP reloads the configuration file).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use sse_bridge::config::{LogFormat, Settings};

/// jemalloc, for Rust and (as `malloc` itself) for the C code linked in (librdkafka's
/// fetch queues), so that memory freed after a flood (connections, catch-up buffers)
/// goes back to the OS: glibc's per-thread arenas keep most of it.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Purge freed pages on jemalloc's background thread, one second after they are freed.
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Kafka and MongoDB change feeds as resumable Server-Sent Events.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Run the service with this TOML configuration file.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "check_config",
        required_unless_present = "check_config"
    )]
    config: Option<PathBuf>,
    /// Validate this configuration file and exit (0: valid; 2: every problem listed).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `--version`: the build, and the librdkafka linked in with its features.
fn long_version() -> String {
    let (rdkafka, features) = sse_bridge::source::kafka::librdkafka();
    format!(
        "{} (commit {}, {} build, {}, {})\nlibrdkafka {rdkafka} (builtin.features: {features})",
        env!("CARGO_PKG_VERSION"),
        env!("SSE_BRIDGE_COMMIT"),
        env!("SSE_BRIDGE_PROFILE"),
        env!("SSE_BRIDGE_TARGET"),
        env!("SSE_BRIDGE_RUSTC"),
    )
}

fn main() -> ExitCode {
    let matches = Cli::command()
        .long_version(Box::leak(long_version().into_boxed_str()) as &str)
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Some(file) = cli.check_config {
        return match Settings::load(&file) {
            Ok(s) => {
                println!("{}: valid ({} route(s))", file.display(), s.routes.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{}: {e}", file.display());
                ExitCode::from(2)
            }
        };
    }
    let Some(file) = cli.config else {
        return ExitCode::from(2);
    };
    let settings = match Settings::load(&file) {
        Ok(s) => s,
        Err(e) => {
            eprint!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    init_logging(settings.server.log_format);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let hup = rt
        .block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) });
    let reloads: futures::stream::BoxStream<'static, ()> = match hup {
        Ok(mut s) => Box::pin(futures::stream::poll_fn(move |cx| s.poll_recv(cx))),
        Err(_) => Box::pin(futures::stream::pending()),
    };
    match rt.block_on(sse_bridge::run(settings, file, shutdown_signal(), reloads)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sse-bridge failed");
            ExitCode::FAILURE
        }
    }
}
