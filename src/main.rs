//! The `scrapyd-rs` binary: parses the command line, reads the configuration, binds, and runs
//! [`scrapyd_rs::serve_on`] until SIGINT or SIGTERM.

use clap::Parser;
use scrapyd_rs::config::{Config, LoadOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// A Scrapyd-compatible daemon: deploy Scrapy projects, schedule and watch crawls.
#[derive(Parser, Debug)]
#[command(name = "scrapyd-rs", version, about, long_about = None)]
struct Cli {
    /// Read this configuration file after the standard ones (repeatable).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Vec<PathBuf>,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    verbose: u8,
    /// Append the daemon's log to FILE instead of standard error ('-' for standard output).
    #[arg(short = 'l', long = "logfile", value_name = "FILE")]
    logfile: Option<PathBuf>,
    /// Write the daemon's pid to FILE (empty: none), as twistd's --pidfile.
    #[arg(long = "pidfile", value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// Accepted for compatibility with `scrapyd --nodaemon`; scrapyd-rs never daemonizes.
    #[arg(short = 'n', long = "nodaemon")]
    nodaemon: bool,
}

fn init_tracing(cli: &Cli) -> Result<(), String> {
    let default = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match cli.logfile.as_deref() {
        Some(p) if p.as_os_str() == "-" => {
            use std::io::IsTerminal;
            builder
                .with_ansi(std::io::stdout().is_terminal())
                .with_writer(std::io::stdout)
                .init()
        }
        Some(p) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("cannot open the log file {}: {e}", p.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init()
        }
        None => {
            use std::io::IsTerminal;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .init()
        }
    }
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now, and returns the future that ends at the first
/// of them. Installing them before anything listens matters: a signal that arrives once the
/// daemon has answered a request must stop it cleanly, never kill it with the default action.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("received SIGINT, shutting down"),
            _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
        }
    })
}

async fn run(cli: Cli) -> Result<(), String> {
    let shutdown = shutdown_signal()?;
    let options = LoadOptions::from_process(cli.config.clone())
        .map_err(|e| format!("current directory: {e}"))?;
    let config = Config::load(&options).map_err(|e| e.to_string())?;
    for source in &config.sources {
        tracing::debug!("read {}", source.display());
    }
    let listener = if config.tcp_enabled() {
        let addr = (config.bind_address.as_str(), config.http_port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            format!(
                "cannot listen on {}:{}: {e}",
                config.bind_address, config.http_port
            )
        })?;
        Some(listener)
    } else {
        None
    };
    let pidfile = cli.pidfile.filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = &pidfile {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write the pid file {}: {e}", p.display()))?;
    }
    let result = scrapyd_rs::serve_on(config, listener, shutdown)
        .await
        .map_err(|e| e.to_string());
    if let Some(p) = &pidfile {
        let _ = std::fs::remove_file(p);
    }
    result
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_tracing(&cli) {
        eprintln!("scrapyd-rs: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scrapyd-rs: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("scrapyd-rs: {e}");
            ExitCode::FAILURE
        }
    }
}
