//! The command line: one subcommand per process of the benchmark.

use crate::e2e::{self, Options, Scenario};
use crate::generator::{self, Load, Pace};
use crate::wire::Protocol;
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// End-to-end benchmark of Sluice: load generator, sink, subscriber, publisher, orchestrator.
#[derive(Parser, Debug)]
#[command(name = "sluice-loadgen", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send readings from many simulated devices (CoAP, or `--protocol gwmp`); print a JSON report.
    Coap {
        /// Where to send (the gateway's or the sink's CoAP address).
        #[arg(long)]
        target: SocketAddr,
        /// Protocol spoken.
        #[arg(long, value_enum, default_value = "coap")]
        protocol: Protocol,
        /// Simulated devices; requests go to them in turn.
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Device id prefix (CoAP ids are `<prefix><n>`).
        #[arg(long, default_value = "bench-")]
        prefix: String,
        /// GWMP: number of the first ABP device (devices `first` … `first + devices - 1`).
        #[arg(long, default_value_t = 0)]
        first_device: u32,
        /// Non-confirmable requests (default: confirmable).
        #[arg(long)]
        non: bool,
        /// Closed loop: requests in flight.
        #[arg(long, conflicts_with = "rate")]
        in_flight: Option<u32>,
        /// Open loop: requests per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Seconds of sending.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// How long to wait for an answer, ms.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// A CoAP server answering every request `2.04` at once.
    Sink {
        /// Address to serve on (port 0: any; the port is printed).
        #[arg(long, default_value = "127.0.0.1:5683")]
        listen: String,
        /// Stop after this many seconds (default: run until killed).
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Count every reading arriving upstream; answer `stats`, `mark`, `quit` on stdin.
    Subscribe {
        /// Broker host.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Broker port.
        #[arg(long)]
        port: u16,
    },
    /// Publish batch-sized payloads with QoS 1 (the broker's ceiling); print a JSON report.
    Publish {
        /// Broker host.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Broker port.
        #[arg(long)]
        port: u16,
        /// Payload size.
        #[arg(long, default_value_t = 10_000)]
        bytes: usize,
        /// Unacknowledged publishes at most.
        #[arg(long, default_value_t = 100)]
        in_flight: u16,
        /// Seconds of publishing.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Run the whole benchmark: mosquitto, `sluice run`, subscriber, generators, baselines.
    E2e {
        /// The gateway binary (default: `$CARGO_TARGET_DIR/release/sluice`, or `target/release/sluice`).
        #[arg(long)]
        sluice: Option<PathBuf>,
        /// The `scale` function module.
        #[arg(long, default_value = "functions/dist/scale.wasm")]
        scale: PathBuf,
        /// The `cayenne-lpp` function module (GWMP scenarios' decoder).
        #[arg(long, default_value = "functions/dist/cayenne-lpp.wasm")]
        cayenne_lpp: PathBuf,
        /// Folder for the gateway's database and the logs (a disk, not tmpfs).
        #[arg(long, default_value = "/var/tmp")]
        dir: PathBuf,
        /// Seconds of load per scenario.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Simulated devices per scenario.
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Scenarios (`con:closed:32`, `non:closed:256`, `con:open:100`, `con:open:half`,
        /// LoRaWAN uplinks over GWMP, open loop only: `gwmp:open:5000`);
        /// default: con:closed:32, con:closed:256, non:closed:256, con:open:100, con:open:half.
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
        /// Skip the baselines (generator against the sink, plain publisher).
        #[arg(long)]
        no_baselines: bool,
        /// No `scale` function: readings go to the queue as they are.
        #[arg(long)]
        no_function: bool,
        /// Three functions per reading instead of `scale` alone: `scale` →
        /// `threshold` + `deadband` (modules beside `--scale`).
        #[arg(long, conflicts_with = "no_function")]
        chain: bool,
        /// Keep the folder with the logs and the database afterwards.
        #[arg(long)]
        keep: bool,
    },
}

/// Whether `args` (as from `std::env::args_os`) name one of the commands
/// (used by a test binary that also acts as this tool for its children).
pub fn is_command(args: &[OsString]) -> bool {
    matches!(
        args.get(1).and_then(|a| a.to_str()),
        Some("coap" | "sink" | "subscribe" | "publish" | "e2e")
    )
}

/// Parses `args` and runs the command; errors go to stderr with their context.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = Cli::parse_from(args);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("{s} is not a duration in seconds"))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Coap {
            target,
            protocol,
            devices,
            prefix,
            first_device,
            non,
            in_flight,
            rate,
            seconds: s,
            timeout_ms,
        } => {
            let pace = match (in_flight, rate) {
                (Some(n), None) => Pace::Closed(n.max(1)),
                (None, Some(r)) if r > 0.0 => Pace::Open(r),
                (None, None) => Pace::Closed(32),
                _ => bail!("--rate must be above 0"),
            };
            let load = Load {
                target,
                devices: devices.max(1),
                prefix: prefix.clone(),
                confirmable: !non,
                pace,
                duration: seconds(s)?,
                timeout: Duration::from_millis(timeout_ms),
            };
            let wire = protocol.wire(&prefix, first_device, load.devices)?;
            print_json(&generator::run(&load, wire.as_ref())?)
        }
        Command::Sink { listen, seconds: s } => {
            crate::sink::run(&listen, s.map(seconds).transpose()?)
        }
        Command::Subscribe { host, port } => crate::mqtt::subscribe(&host, port),
        Command::Publish {
            host,
            port,
            bytes,
            in_flight,
            seconds: s,
        } => print_json(&crate::mqtt::publish(
            &host,
            port,
            bytes,
            in_flight,
            seconds(s)?,
        )?),
        Command::E2e {
            sluice,
            scale,
            cayenne_lpp,
            dir,
            seconds: s,
            devices,
            scenarios,
            no_baselines,
            no_function,
            chain,
            keep,
        } => {
            let sluice = sluice.unwrap_or_else(|| {
                let target = std::env::var_os("CARGO_TARGET_DIR")
                    .map_or_else(|| PathBuf::from("target"), PathBuf::from);
                target.join("release/sluice")
            });
            let scenarios = if scenarios.is_empty() {
                e2e::default_scenarios()
            } else {
                scenarios
                    .iter()
                    .map(|s| Scenario::parse(s))
                    .collect::<Result<_>>()?
            };
            let opts = Options {
                sluice,
                loadgen: std::env::current_exe().context("this program's path")?,
                scale,
                cayenne_lpp,
                functions: match (no_function, chain) {
                    (true, _) => e2e::Functions::None,
                    (false, true) => e2e::Functions::Chain,
                    (false, false) => e2e::Functions::Scale,
                },
                dir,
                seconds: s,
                devices: devices.max(1),
                scenarios,
                baselines: !no_baselines,
                keep,
            };
            e2e::run(&opts).map(|_| ())
        }
    }
}
