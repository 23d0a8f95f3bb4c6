//! The `sluice` command: run the gateway, check a config, inspect the queue,
//! manage gateways (`keygen`, `cmd`, `status`).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sluice::Runtime;
use sluice::config::Config;
use sluice::control;
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
    /// Make an Ed25519 key pair: OUT.key (secret, mode 0600) and OUT.pub.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Send a signed command to a gateway or the fleet and print the replies
    /// (one JSON object per line); `--local` uses the gateway's socket instead.
    Cmd(Box<CmdArgs>),
    /// The status of the gateway on this machine, through its local socket.
    Status {
        /// The socket (default: from --config, or /var/lib/sluice/control.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// The gateway's config file, to find its socket.
        #[arg(long, short)]
        config: Option<PathBuf>,
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

#[derive(clap::Args)]
struct CmdArgs {
    /// The command: ping, status, config.get, config.apply, function.deploy, …
    command: String,
    /// Its arguments as a JSON object.
    args: Option<String>,
    /// config.apply: the config file to send; function.deploy: the .wasm module.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Send to the local socket (no broker, no key).
    #[arg(long)]
    local: bool,
    /// The local socket (default: from --config).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// A gateway config: broker, topic root and gateway id (or socket) from it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The broker, mqtt://host:port.
    #[arg(long)]
    broker: Option<String>,
    /// The topic root.
    #[arg(long)]
    root: Option<String>,
    /// The gateway's id.
    #[arg(long)]
    gateway: Option<String>,
    /// Send to every gateway under the root.
    #[arg(long, conflicts_with = "gateway")]
    fleet: bool,
    /// With --fleet: stop waiting once this many gateways replied.
    #[arg(long)]
    expect: Option<usize>,
    /// The operator's secret key file.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Trust only replies signed by these gateway public key files.
    #[arg(long = "gateway-key")]
    gateway_keys: Vec<PathBuf>,
    /// The command id (default: a random one). The same id again is answered from the gateway's cache.
    #[arg(long)]
    id: Option<String>,
    /// Seconds to wait for the replies.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Broker username.
    #[arg(long)]
    username: Option<String>,
    /// Broker password.
    #[arg(long)]
    password: Option<String>,
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
        Command::Keygen { out } => keygen(&out),
        Command::Cmd(args) => return cmd(*args),
        Command::Status { socket, config } => return status(socket, config),
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

/// Logs to stderr at `SLUICE_LOG`, or at `default` if it is unset or does
/// not parse; returns what changes the filter later (`log.level`).
/// A filter is a level, `target=level` pairs, or both, comma-separated.
fn init_logging(default: &str) -> control::LogLevel {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let fallback = || default.parse::<Targets>().unwrap_or_default();
    let filter = match std::env::var("SLUICE_LOG") {
        Ok(text) => text.parse().unwrap_or_else(|e| {
            eprintln!("SLUICE_LOG={text:?} is not a log filter ({e}); logging at {default:?}");
            fallback()
        }),
        Err(_) => fallback(),
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    Box::new(move |text: &str| {
        let filter: Targets = text.parse().map_err(|e| format!("{e}"))?;
        handle.reload(filter).map_err(|e| e.to_string())?;
        tracing::info!(filter = text, "Log filter changed");
        Ok(())
    })
}

/// The config to run: the one last applied by management, if there is
/// one and it loads, else the file.
fn effective_config(path: &Path, file: Config) -> Result<(Config, control::Current)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let store = control::store::Store::new(&file.gateway.data_dir);
    if let Some(saved) = store.saved() {
        match (Config::load(&saved), std::fs::read_to_string(&saved)) {
            (Ok(config), Ok(saved_text)) => {
                tracing::info!(config = %saved.display(), "Running the config last applied by a command");
                return Ok((config, control::Current::from_file(&saved_text, &saved)));
            }
            (Err(e), _) => {
                tracing::error!(config = %saved.display(), error = %e, "The last applied config does not load; running the file")
            }
            (_, Err(e)) => {
                tracing::error!(config = %saved.display(), error = %e, "The last applied config cannot be read; running the file")
            }
        }
    }
    Ok((file, control::Current::from_file(&text, path)))
}

fn run(path: &Path) -> Result<()> {
    let file = load(path)?;
    let log_level = init_logging("info");
    let (config, current) = effective_config(path, file)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let channels = control::channels();
        let mut runtime = Runtime::start_controlled(config.clone(), Some(channels.link))
            .await
            .context("cannot start the gateway")?;
        runtime.set_config_hash(&current.hash);
        let mut controller =
            match control::Controller::new(&config, current, channels.outbound, Some(log_level)) {
                Ok(c) => c,
                Err(e) => {
                    runtime.shutdown().await;
                    return Err(e).context("cannot start control");
                }
            };
        let socket = config.control.socket_path(&config.gateway.data_dir);
        let listener = match control::local::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                runtime.shutdown().await;
                return Err(e).with_context(|| format!("cannot listen on {}", socket.display()));
            }
        };
        let (stop_local, stopped) = tokio::sync::watch::channel(false);
        let local = tokio::spawn(control::local::serve(listener, channels.inbound, stopped));
        tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %path.display(),
            socket = %socket.display(), public_key = controller.public_key(), "Sluice running");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        let watchdog = watchdog(runtime.liveness());
        let mut signals = Signals::new()?;
        let mut commands = channels.commands;
        loop {
            tokio::select! {
                signal = signals.next() => match signal {
                    Signal::Stop => break,
                    Signal::Reload => reload(&mut runtime, &mut controller, path).await,
                },
                Some(command) = commands.recv() => controller.handle(&mut runtime, command).await,
            }
        }
        let _ = stop_local.send(true);
        let _ = local.await;
        let _ = std::fs::remove_file(&socket);
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
    let _log_level = init_logging("warn,rumqttd=off");
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

/// The signals `sluice run` reacts to, watched from start to stop.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => { tracing::info!(signal = "SIGTERM", "Signal received"); Signal::Stop }
            _ = self.int.recv() => { tracing::info!(signal = "SIGINT", "Signal received"); Signal::Stop }
            _ = self.hup.recv() => { tracing::info!(signal = "SIGHUP", "Signal received"); Signal::Reload }
        }
    }
}

/// Re-reads the config file and applies it: only what changed restarts. A
/// broken file, a change that needs a restart, or a config that cannot
/// start changes nothing; the running config keeps serving. Once applied,
/// the file is also what a restart runs (it replaces a config applied by
/// a command).
async fn reload(runtime: &mut Runtime, controller: &mut control::Controller, path: &Path) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
    match Config::load(path) {
        Ok(config) => match runtime.apply(config.clone()).await {
            Ok(changes) => {
                if let Ok(text) = std::fs::read_to_string(path) {
                    controller.reloaded(runtime, &config, &text, path);
                }
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

/// `sluice keygen`: OUT.key and OUT.pub; prints the public key.
fn keygen(out: &Path) -> Result<()> {
    let key = control::keys::generate()?;
    let secret = out.with_extension("key");
    let public = out.with_extension("pub");
    control::keys::write_secret(&secret, &key)?;
    control::keys::write_public(&public, &key)?;
    write_stdout(&format!(
        "secret key: {}\npublic key: {} ({})\n",
        secret.display(),
        public.display(),
        control::keys::public_of(&key).to_base64()
    ))
}

/// `sluice status`: the local gateway's status, pretty-printed.
fn status(socket: Option<PathBuf>, config: Option<PathBuf>) -> ExitCode {
    let args = CmdArgs {
        command: "status".into(),
        args: None,
        file: None,
        local: true,
        socket,
        config,
        broker: None,
        root: None,
        gateway: None,
        fleet: false,
        expect: None,
        key: None,
        gateway_keys: Vec::new(),
        id: None,
        timeout: 10.0,
        username: None,
        password: None,
    };
    cmd(args)
}

/// `sluice cmd`: exit 0 if every expected reply arrived and succeeded, 1 if
/// one failed, 2 if replies are missing or the command could not be sent.
fn cmd(a: CmdArgs) -> ExitCode {
    let result = (|| -> Result<ExitCode> {
        let config = a.config.as_deref().map(load).transpose()?;
        let mut args: serde_json::Value = match &a.args {
            Some(text) => {
                serde_json::from_str(text).context("the arguments are not a JSON object")?
            }
            None => serde_json::json!({}),
        };
        let id =
            a.id.clone()
                .unwrap_or_else(|| control::envelope::nonce()[..12].to_owned());
        let requests = match (a.command.as_str(), &a.file) {
            ("function.deploy", Some(file)) => {
                let module = std::fs::read(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                control::client::deploy_chunks(&id, &args, &module)
            }
            ("config.apply", Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                args["config"] = serde_json::json!(text);
                vec![control::client::request(&id, &a.command, args)]
            }
            (_, Some(_)) => anyhow::bail!("--file goes with config.apply or function.deploy"),
            (_, None) => vec![control::client::request(&id, &a.command, args)],
        };
        let timeout = std::time::Duration::from_secs_f64(a.timeout.max(0.1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let (replies, wanted) = if a.local {
            let socket = match (&a.socket, &config) {
                (Some(s), _) => s.clone(),
                (None, Some(c)) => c.control.socket_path(&c.gateway.data_dir),
                (None, None) => Config::parse("", "defaults")
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .map(|c| c.control.socket_path(&c.gateway.data_dir))?,
            };
            let replies = rt.block_on(async {
                tokio::time::timeout(timeout, control::client::send_local(&socket, requests)).await
            });
            let replies = replies
                .map_err(|_| anyhow::anyhow!("no reply within {timeout:?}"))?
                .map_err(anyhow::Error::msg)?;
            (replies, Some(1))
        } else {
            let key_path = a
                .key
                .as_deref()
                .context("--key (the operator's secret key file) is needed")?;
            let key = control::keys::read_secret(key_path)?;
            let trusted = a
                .gateway_keys
                .iter()
                .map(|p| control::keys::read_public(p))
                .collect::<Result<Vec<_>, _>>()?;
            let broker: sluice::config::BrokerUrl = match (&a.broker, &config) {
                (Some(b), _) => b.parse().map_err(anyhow::Error::msg)?,
                (None, Some(c)) => c.uplink.url.clone(),
                (None, None) => anyhow::bail!("--broker or --config is needed"),
            };
            let root = a
                .root
                .clone()
                .or_else(|| config.as_ref().map(|c| c.uplink.topic_root.clone()))
                .unwrap_or_else(|| "sluice".into());
            let target = match (a.fleet, &a.gateway, &config) {
                (true, _, _) => sluice::uplink::operator::Target::Fleet,
                (false, Some(g), _) => sluice::uplink::operator::Target::Gateway(g.clone()),
                (false, None, Some(c)) => {
                    sluice::uplink::operator::Target::Gateway(c.gateway.id.to_string())
                }
                (false, None, None) => anyhow::bail!("--gateway, --fleet or --config is needed"),
            };
            let wanted = match target {
                sluice::uplink::operator::Target::Fleet => a.expect,
                _ => Some(1),
            };
            let credentials = a
                .username
                .clone()
                .map(|u| (u, a.password.clone().unwrap_or_default()));
            let remote = control::client::Remote {
                broker,
                credentials,
                root,
                target,
                key,
                trusted,
                expect: a.expect,
            };
            let replies = rt
                .block_on(control::client::send_remote(&remote, requests, timeout))
                .map_err(anyhow::Error::msg)?;
            (replies, wanted)
        };
        let mut out = String::new();
        for r in &replies {
            out.push_str(&r.reply.to_string());
            out.push('\n');
        }
        write_stdout(&out)?;
        if replies.iter().any(|r| !r.ok) {
            return Ok(ExitCode::from(1));
        }
        if wanted.is_some_and(|w| replies.len() < w) {
            eprintln!(
                "{} of {} replies arrived within {timeout:?}",
                replies.len(),
                wanted.unwrap_or(0)
            );
            return Ok(ExitCode::from(2));
        }
        Ok(ExitCode::SUCCESS)
    })();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
