//! The `sluice` command: run the gateway, check a config, inspect the queue.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sluice::Runtime;
use sluice::config::Config;
use sluice::queue::inspect;
use sluice::record::UpstreamRecord;
use sluice_event::{Event, EventView};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Sluice: an edge gateway runtime.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway until SIGTERM or SIGINT.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file: every problem as file:line:column, non-zero exit if any.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Inspect the queue of a config offline.
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Work with edge functions.
    Fn {
        #[command(subcommand)]
        action: FnAction,
    },
    /// The showcase: an embedded MQTT broker, simulated CoAP devices, Modbus
    /// meters and LoRaWAN devices, and the standard functions, all on this
    /// machine; prints what arrives upstream.
    #[cfg(feature = "demo")]
    Demo {
        /// The folder holding scale.wasm, threshold.wasm, window.wasm and cayenne-lpp.wasm
        /// (functions/build.sh builds them).
        #[arg(long, default_value = "functions/dist")]
        modules: PathBuf,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long = "for", value_name = "SECONDS")]
        run_for: Option<u64>,
    },
}

#[derive(Subcommand)]
enum FnAction {
    /// Run a function on events from a file with the production limits; print
    /// every call's emitted events, logs, fuel and time.
    Test {
        /// The function's `.wasm` module.
        #[arg(long)]
        module: PathBuf,
        /// Events, one JSON object per line (`{"tick": MS}` calls the tick entry point).
        #[arg(long)]
        events: PathBuf,
        /// Take the function's limits and settings from this gateway config.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Which function of the config (needed if it has several).
        #[arg(long)]
        function: Option<String>,
    },
}

#[derive(Subcommand)]
enum QueueAction {
    /// Records, bytes, age and losses per stream.
    Stats {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The next records to be sent, as upstream JSON records, one per line.
    Peek {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// How many records.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// The newest inputs that functions failed on, one JSON object per line.
    DeadLetters {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config } => return check(&config),
        Command::Run { config } => run(&config),
        Command::Queue {
            action: QueueAction::Stats { config },
        } => queue_stats(&config),
        Command::Queue {
            action: QueueAction::Peek { config, limit },
        } => queue_peek(&config, limit),
        Command::Queue {
            action: QueueAction::DeadLetters { config, limit },
        } => queue_dead_letters(&config, limit),
        Command::Fn {
            action:
                FnAction::Test {
                    module,
                    events,
                    config,
                    function,
                },
        } => return fn_test(&module, &events, config.as_deref(), function.as_deref()),
        #[cfg(feature = "demo")]
        Command::Demo { modules, run_for } => demo(modules, run_for),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("invalid config\n{e}"))
}

fn check(path: &Path) -> ExitCode {
    match Config::load_with(path, sluice::functions::check_modules) {
        Ok(config) => {
            let _ = write_stdout(&format!("{}: ok\n{}", path.display(), config.summary()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            let n = e.lines().len();
            eprintln!("{n} problem{} found", if n == 1 { "" } else { "s" });
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at `SLUICE_LOG`, or at `default` if it is unset.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(path: &Path) -> Result<()> {
    let config = load(path)?;
    init_logging("info");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let mut runtime = Runtime::start(config)
            .await
            .context("cannot start the gateway")?;
        tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %path.display(), "Sluice running");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        let watchdog = watchdog(runtime.liveness());
        while wait_for_signal().await? == Signal::Reload {
            reload(&mut runtime, path).await;
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        tracing::info!("Stopping: intake closed, committing what is pending");
        if let Some(w) = watchdog {
            w.abort();
        }
        runtime.shutdown().await;
        tracing::info!("Stopped cleanly");
        Ok(())
    })
}

/// `sluice demo`: warnings only by default, so the screen shows the demo.
#[cfg(feature = "demo")]
fn demo(modules: PathBuf, run_for: Option<u64>) -> Result<()> {
    // rumqttd logs every ordinary disconnect at `error`; the demo notices a
    // broker that does not start by itself.
    init_logging("warn,rumqttd=off");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let options = sluice::demo::Options {
        modules,
        run_for: run_for.map(std::time::Duration::from_secs),
    };
    rt.block_on(sluice::demo::run(options))?;
    Ok(())
}

/// Pings systemd's watchdog at half its interval, if it asked for one, but
/// only while the queue writer and the uplink are making progress: a stuck
/// writer or uplink stops the pings, and systemd restarts the service.
fn watchdog(liveness: sluice::runtime::Liveness) -> Option<tokio::task::JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()? / 2;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut withheld = false;
        loop {
            tick.tick().await;
            if liveness.is_alive(interval / 2).await {
                if withheld {
                    tracing::info!("Watchdog: queue writer and uplink are making progress again");
                }
                withheld = false;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            } else {
                withheld = true;
                tracing::error!("Watchdog ping withheld: the queue writer or the uplink is stuck");
            }
        }
    }))
}

/// What a signal asks for.
#[derive(PartialEq, Eq)]
enum Signal {
    Stop,
    Reload,
}

async fn wait_for_signal() -> Result<Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    Ok(tokio::select! {
        _ = term.recv() => { tracing::info!(signal = "SIGTERM", "Signal received"); Signal::Stop }
        _ = int.recv() => { tracing::info!(signal = "SIGINT", "Signal received"); Signal::Stop }
        _ = hup.recv() => { tracing::info!(signal = "SIGHUP", "Signal received"); Signal::Reload }
    })
}

/// Re-reads the config file and applies it: only what changed restarts. A
/// broken file, a change that needs a restart, or a config that cannot
/// start changes nothing; the running config keeps serving.
async fn reload(runtime: &mut Runtime, path: &Path) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
    match Config::load(path) {
        Ok(config) => match runtime.apply(config).await {
            Ok(changes) => {
                tracing::info!(config = %path.display(), changes = %changes, "Config reloaded")
            }
            Err(error) => {
                tracing::error!(error = %error, "Reload refused; the running config keeps serving")
            }
        },
        Err(error) => {
            tracing::error!(error = %error, "Reload refused: the config has problems; nothing changed")
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

fn queue_stats(path: &Path) -> Result<()> {
    use std::fmt::Write;
    let config = load(path)?;
    let db = config.queue_path();
    let stats =
        inspect::stats(&db).with_context(|| format!("cannot read queue {}", db.display()))?;
    let now = sluice::clock::now_ms();
    let mut out = format!("queue {}\n", db.display());
    let _ = writeln!(
        out,
        "{:<16} {:>10} {:>12} {:>12} {:>10} {:>10} {:>10}",
        "stream", "records", "bytes", "oldest", "dropped", "rejected", "expired"
    );
    for s in stats {
        let age = s.oldest_ms.map_or("-".to_string(), |t| {
            format!("{} s", (now - t).max(0) / 1000)
        });
        let _ = writeln!(
            out,
            "{:<16} {:>10} {:>12} {:>12} {:>10} {:>10} {:>10}",
            s.name, s.records, s.bytes, age, s.dropped, s.rejected, s.expired
        );
    }
    write_stdout(&out)
}

fn queue_peek(path: &Path, limit: usize) -> Result<()> {
    let config = load(path)?;
    let db = config.queue_path();
    let rows =
        inspect::peek(&db, limit).with_context(|| format!("cannot read queue {}", db.display()))?;
    let mut out = String::new();
    for row in rows {
        let line = match EventView::parse(&row.event) {
            Ok(event) => {
                let record = UpstreamRecord {
                    event: &event,
                    stream: &row.stream,
                    queued_ms: row.enqueued_ms,
                };
                serde_json::to_string(&record).context("cannot encode record")?
            }
            Err(e) => serde_json::json!({ "seq": row.seq, "error": e.to_string() }).to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    write_stdout(&out)
}

fn queue_dead_letters(path: &Path, limit: usize) -> Result<()> {
    let config = load(path)?;
    let db = config.queue_path();
    let rows = inspect::dead_letters(&db, limit)
        .with_context(|| format!("cannot read queue {}", db.display()))?;
    let mut out = String::new();
    for row in rows {
        let mut line = serde_json::to_value(&row).context("cannot encode dead letter")?;
        let event = match row.event.as_deref().map(Event::decode) {
            Some(Ok(e)) => sluice::record::event_json(&e),
            Some(Err(e)) => serde_json::json!({ "error": e.to_string() }),
            None => serde_json::Value::Null,
        };
        if let Some(map) = line.as_object_mut() {
            map.insert("event".into(), event);
        }
        out.push_str(&line.to_string());
        out.push('\n');
    }
    write_stdout(&out)
}

/// `sluice fn test`: exit 0 if every call succeeded, 1 if some failed, 2 on bad input.
fn fn_test(
    module: &Path,
    events: &Path,
    config: Option<&Path>,
    function: Option<&str>,
) -> ExitCode {
    let result = (|| -> Result<(String, sluice::fn_test::Summary)> {
        let mut f = match config {
            Some(path) => {
                let config = load(path)?;
                pick_function(config.functions, function, module)?
            }
            None => default_function(function.unwrap_or("test"))?,
        };
        f.module = module.to_owned();
        let text = std::fs::read_to_string(events)
            .with_context(|| format!("cannot read {}", events.display()))?;
        sluice::fn_test::run(f, &text, &events.display().to_string()).map_err(anyhow::Error::msg)
    })();
    match result {
        Ok((report, summary)) => {
            let _ = write_stdout(&report);
            if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The function of a config to test: by name, by module path, or the only one.
fn pick_function(
    functions: Vec<sluice::config::FunctionConfig>,
    name: Option<&str>,
    module: &Path,
) -> Result<sluice::config::FunctionConfig> {
    let names: Vec<String> = functions.iter().map(|f| f.name.clone()).collect();
    let mut candidates: Vec<_> = match name {
        Some(n) => functions.into_iter().filter(|f| f.name == n).collect(),
        None if functions.len() == 1 => functions,
        None => functions
            .into_iter()
            .filter(|f| f.module.canonicalize().ok() == module.canonicalize().ok())
            .collect(),
    };
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        _ => anyhow::bail!(
            "say which function with --function (the config has: {})",
            names.join(", ")
        ),
    }
}

/// A function with every limit at its default and no settings.
fn default_function(name: &str) -> Result<sluice::config::FunctionConfig> {
    let text =
        format!("[[functions]]\nname = {name:?}\nmodule = \"-\"\nsubscribe = [\"test/#\"]\n");
    let mut config = Config::parse(&text, "--function").map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config.functions.remove(0))
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}
