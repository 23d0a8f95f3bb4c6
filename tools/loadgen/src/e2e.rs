//! The orchestrator: mosquitto, the real `sluice run` binary with a
//! generated config, the subscriber, and for each scenario a generator, each
//! in its own OS process; CPU and memory read from `/proc`; results as
//! markdown tables. Every wait polls with a deadline. CoAP scenarios post
//! JSON readings through `scale`; GWMP scenarios send LoRaWAN uplinks of
//! ABP devices (written into the config's `[lorawan]` section) through the
//! `cayenne-lpp` decoder.

use crate::generator::{LoadReport, unix_us};
use crate::mqtt::{PublishReport, SubscriberStats};
use crate::procfs::{CpuSample, MachineCpu, Memory, ticks_to_duration};
use crate::stats::ms;
use crate::wire::{AbpDevice, GATEWAY_EUI, Protocol};
use anyhow::{Context, Result, anyhow, bail};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the gateway may take to answer its first request.
const GATEWAY_READY: Duration = Duration::from_secs(30);
/// How long readings may take to arrive upstream after the generator ends.
const ARRIVAL: Duration = Duration::from_secs(30);
/// Between looks at the subscriber's counts while readings arrive.
const ARRIVAL_POLL: Duration = Duration::from_millis(20);
/// Between memory samples of the gateway while a generator runs.
const MEMORY_POLL: Duration = Duration::from_millis(50);
/// How long a generator waits for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// How a scenario paces its requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// This many requests in flight.
    Closed(u32),
    /// This many requests per second.
    Open(f64),
    /// Half the best acknowledged rate of the closed-loop CON scenarios before it.
    OpenHalfMax,
}

/// One measured scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// CoAP or GWMP.
    pub protocol: Protocol,
    /// CON or NON requests (GWMP: always unconfirmed uplinks, false).
    pub confirmable: bool,
    /// Closed or open loop.
    pub pace: Pace,
}

impl Scenario {
    /// Parses `con:closed:32`, `non:closed:256`, `con:open:100`,
    /// `con:open:half`, and for LoRaWAN uplinks over GWMP `gwmp:open:5000`
    /// (open loop only: PUSH_ACK is no back-pressure).
    pub fn parse(text: &str) -> Result<Scenario> {
        let parts: Vec<&str> = text.split(':').collect();
        let [kind, loop_, n] = parts[..] else {
            bail!("scenario `{text}`: expected con|non|gwmp:closed|open:N (or open:half)");
        };
        let (protocol, confirmable) = match kind {
            "con" => (Protocol::Coap, true),
            "non" => (Protocol::Coap, false),
            "gwmp" => (Protocol::Gwmp, false),
            _ => bail!("scenario `{text}`: `{kind}` is not con, non or gwmp"),
        };
        if protocol == Protocol::Gwmp && (loop_ != "open" || n == "half") {
            // PUSH_ACK goes out on receipt, before any work: it cannot pace a
            // closed loop, which would only measure how fast datagrams are dropped.
            bail!("scenario `{text}`: GWMP is open loop only (gwmp:open:RATE)");
        }
        let pace = match (loop_, n) {
            ("open", "half") => Pace::OpenHalfMax,
            ("open", n) => Pace::Open(
                n.parse()
                    .with_context(|| format!("scenario `{text}`: rate"))?,
            ),
            ("closed", n) => Pace::Closed(
                n.parse()
                    .with_context(|| format!("scenario `{text}`: in flight"))?,
            ),
            _ => bail!("scenario `{text}`: `{loop_}` is not closed or open"),
        };
        Ok(Scenario {
            protocol,
            confirmable,
            pace,
        })
    }

    /// A short label for tables.
    pub fn label(&self) -> String {
        let kind = match (self.protocol, self.confirmable) {
            (Protocol::Gwmp, _) => "GWMP",
            (Protocol::Coap, true) => "CON",
            (Protocol::Coap, false) => "NON",
        };
        match self.pace {
            Pace::Closed(n) => format!("{kind}, {n} in flight"),
            Pace::Open(r) => format!("{kind}, {r} /s"),
            Pace::OpenHalfMax => format!("{kind}, half max /s"),
        }
    }
}

/// The scenarios measured by default: the goals' operating points.
pub fn default_scenarios() -> Vec<Scenario> {
    [
        "con:closed:32",
        "con:closed:256",
        "non:closed:256",
        "con:open:100",
        "con:open:half",
    ]
    .iter()
    .filter_map(|s| Scenario::parse(s).ok())
    .collect()
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `sluice` binary.
    pub sluice: PathBuf,
    /// This tool's binary, started for generators, sink, subscriber and publisher.
    pub loadgen: PathBuf,
    /// The `scale` function module.
    pub scale: PathBuf,
    /// The `cayenne-lpp` function module: the GWMP scenarios' decoder.
    pub cayenne_lpp: PathBuf,
    /// The functions every CoAP reading goes through.
    pub functions: Functions,
    /// Where the gateway's database goes (a disk, not tmpfs, to be honest).
    pub dir: PathBuf,
    /// Seconds of load per scenario.
    pub seconds: f64,
    /// Simulated devices per scenario.
    pub devices: usize,
    /// The scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Also measure the generator against the sink (at each closed-loop
    /// window of the scenarios) and the plain publisher.
    pub baselines: bool,
    /// Keep the folder with the logs and the database afterwards.
    pub keep: bool,
}

/// One scenario's outcome.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Scenario label.
    pub label: String,
    /// What the generator measured.
    pub load: LoadReport,
    /// Readings that arrived upstream (first copies).
    pub arrived: u64,
    /// Copies beyond the first, upstream.
    pub duplicates: u64,
    /// Sequence numbers of this scenario's devices missing upstream
    /// (refused and unanswered requests included).
    pub gaps: u64,
    /// From the first request to the last arrival.
    pub upstream_secs: f64,
    /// End-to-end latency (device send time to arrival).
    pub e2e: crate::stats::Percentiles,
    /// From the generator's start to all readings arrived.
    pub window_secs: f64,
    /// CPU over the window, µs: gateway, broker, subscriber.
    pub sluice_cpu_us: u64,
    /// Broker CPU, µs.
    pub broker_cpu_us: u64,
    /// Subscriber CPU, µs.
    pub subscriber_cpu_us: u64,
    /// The whole machine over the window, µs summed over every core:
    /// busy (every process, also those outside the benchmark).
    pub machine_busy_us: u64,
    /// Idle, µs summed over every core.
    pub machine_idle_us: u64,
    /// Gateway CPU per thread name, µs.
    pub threads: Vec<(String, u64)>,
    /// Gateway resident memory: the most seen while loaded, and the peak so far.
    pub memory: Memory,
    /// Average telemetry batch size, bytes, and records per batch.
    pub batch_bytes: f64,
    /// Records per batch.
    pub batch_records: f64,
}

/// What a whole run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Generator against the do-nothing sink, per closed-loop window.
    pub sink: Vec<(u32, LoadReport, u64)>,
    /// The scenarios.
    pub scenarios: Vec<Outcome>,
    /// The plain publisher against the broker.
    pub publish: Option<PublishBaseline>,
    /// The gateway's idle memory before the first scenario.
    pub idle_memory: Memory,
    /// The machine's load average (`/proc/loadavg`) at the start and the end.
    pub load_average: (String, String),
}

/// The plain publisher through the broker to the subscriber.
#[derive(Clone, Debug, Default)]
pub struct PublishBaseline {
    /// What the publisher measured (PUBACKs from the broker).
    pub publisher: PublishReport,
    /// Messages the subscriber received.
    pub delivered: u64,
    /// From the publisher's start until the subscriber had them all.
    pub secs: f64,
    /// Broker CPU over that time, µs.
    pub broker_cpu_us: u64,
    /// Subscriber CPU over that time, µs.
    pub subscriber_cpu_us: u64,
}

/// A child process killed when dropped, with its stdout lines on a channel.
struct Process {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Process {
    fn start(name: &str, command: &mut Command, log: &Path) -> Result<Process> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .with_context(|| format!("start {name}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("{name}: no stdout"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Process {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, within `timeout`.
    fn line(&self, timeout: Duration) -> Result<String> {
        self.lines
            .recv_timeout(timeout)
            .map_err(|_| anyhow!("{}: no output within {timeout:?}", self.name))
    }

    /// The next stdout line parsed as JSON.
    fn json<T: serde::de::DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        let line = self.line(timeout)?;
        serde_json::from_str(&line)
            .with_context(|| format!("{}: unexpected output `{line}`", self.name))
    }

    /// Sends a command line and reads the JSON answer.
    fn ask<T: serde::de::DeserializeOwned>(&mut self, command: &str) -> Result<T> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("{}: stdin closed", self.name))?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("{}: send `{command}`", self.name))?;
        self.json(Duration::from_secs(10))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_tcp_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
fn poll<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?}");
        }
        std::thread::sleep(every);
    }
}

fn start_broker(dir: &Path, port: u16) -> Result<Process> {
    let conf = dir.join("mosquitto.conf");
    // max_queued_messages 0: no cap on what waits for the subscriber, so a
    // slow subscriber shows as latency, not as messages the broker dropped.
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nlog_dest stderr\nlog_type error\n"
        ),
    )?;
    let broker = Process::start(
        "mosquitto",
        Command::new("mosquitto").arg("-c").arg(&conf),
        &dir.join("mosquitto.log"),
    )
    .context("mosquitto (apt-get install mosquitto)")?;
    poll(
        "mosquitto listening",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || Ok(TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())),
    )?;
    Ok(broker)
}

/// The number of GWMP scenario `index`'s first ABP device: each scenario
/// has devices of its own, so no session carries over.
fn first_device(opts: &Options, index: usize) -> Result<u32> {
    u32::try_from(index * opts.devices).context("too many devices")
}

/// The `[lorawan]` section: every GWMP scenario's ABP devices, decoded by
/// `cayenne-lpp`; empty without GWMP scenarios.
fn lorawan_config(opts: &Options, lorawan: u16) -> Result<String> {
    let gwmp: Vec<usize> = (0..opts.scenarios.len())
        .filter(|&i| opts.scenarios[i].protocol == Protocol::Gwmp)
        .collect();
    if gwmp.is_empty() {
        return Ok(String::new());
    }
    let module = std::fs::canonicalize(&opts.cayenne_lpp).with_context(|| {
        format!(
            "{} (build it with functions/build.sh)",
            opts.cayenne_lpp.display()
        )
    })?;
    let mut text = format!(
        r#"
[[functions]]
name = "cayenne-lpp"
module = "{module}"

[lorawan]
listen = "127.0.0.1:{lorawan}"
# The default deduplication window: with one packet forwarder live, a
# frame's window closes as soon as it arrives.

[lorawan.profiles.bench]
decoder = "cayenne-lpp"

"#,
        module = module.display()
    );
    for i in gwmp {
        let first = first_device(opts, i)?;
        for n in 0..opts.devices as u32 {
            text.push_str(&AbpDevice::of(first + n).config("bench"));
        }
    }
    Ok(text)
}

/// The functions every CoAP reading goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Functions {
    /// None: readings go to the queue as they are, to measure what
    /// functions cost by difference.
    None,
    /// `scale` (°C → °F); its output is queued.
    Scale,
    /// `scale` → `threshold` + `deadband`: three calls per reading. Only
    /// `deadband`'s output is queued; it passes every reading on (its
    /// sequence number and send time always move by more than `delta`),
    /// and `threshold` never fires (the temperature stays below `high`).
    Chain,
}

/// The `[[functions]]` tables of `opts.functions`; the modules are `scale`
/// and, for the chain, `threshold` and `deadband` beside it.
fn functions_config(opts: &Options) -> Result<String> {
    if opts.functions == Functions::None {
        return Ok(String::new());
    }
    let module = |path: &Path| -> Result<PathBuf> {
        std::fs::canonicalize(path)
            .with_context(|| format!("{} (build it with functions/build.sh)", path.display()))
    };
    let scale = module(&opts.scale)?;
    let mut text = format!(
        r#"
[[functions]]
name = "scale"
module = "{scale}"
subscribe = ["coap/+"]
[functions.config]
reading = "temperature"
factor = 1.8
offset = 32
unit = "degF"
"#,
        scale = scale.display()
    );
    if opts.functions == Functions::Chain {
        let beside = |name: &str| module(&scale.with_file_name(format!("{name}.wasm")));
        text.push_str(&format!(
            r#"
[[functions]]
name = "threshold"
module = "{threshold}"
subscribe = ["fn/scale/#"]
[functions.config]
reading = "temperature"
high = 86
low = 80

[[functions]]
name = "deadband"
module = "{deadband}"
subscribe = ["fn/scale/#"]
# Three readings' last values per device: more than the default 64 KiB.
state_max = "1 MiB"
[functions.config]
delta = 0.5
"#,
            threshold = beside("threshold")?.display(),
            deadband = beside("deadband")?.display(),
        ));
    }
    Ok(text)
}

fn write_config(opts: &Options, dir: &Path, mqtt: u16, coap: u16, lorawan: u16) -> Result<PathBuf> {
    let function = functions_config(opts)?;
    let text = format!(
        r#"# Written by sluice-loadgen e2e: CoAP → (scale) → queue (process durability) → MQTT,
# and LoRaWAN (GWMP) → cayenne-lpp → queue → MQTT if a scenario sends uplinks.
[gateway]
id = "bench"
data_dir = "{data}"

[uplink]
url = "mqtt://127.0.0.1:{mqtt}"

[coap]
listen = ["127.0.0.1:{coap}"]
# Every simulated device sends far more than a real one would.
rate_per_device = 1000000
{function}{lorawan}"#,
        data = dir.join("data").display(),
        lorawan = lorawan_config(opts, lorawan)?,
    );
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Sends CON POSTs from a probe device until one is answered `2.04`.
fn wait_for_gateway(coap: u16, gateway: &mut Process) -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(("127.0.0.1", coap))?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let request = sluice_coap::client::Request::new(coap_lite::RequestType::Post, ["r", "probe"])
        .with_payload(sluice_coap::client::JSON, br#"{"temperature": 1}"#.to_vec());
    let mut mid = 0u16;
    poll(
        "the gateway answering CoAP",
        GATEWAY_READY,
        Duration::from_millis(50),
        || {
            if let Ok(Some(status)) = gateway.child.try_wait() {
                bail!("sluice exited ({status}) before answering");
            }
            mid = mid.wrapping_add(1);
            let bytes = request.encode(mid, &mid.to_be_bytes())?;
            let _ = socket.send(&bytes);
            let mut answer = [0u8; 1500];
            Ok(match socket.recv(&mut answer) {
                Ok(n) => crate::wire::Header::parse(&answer[..n])
                    .filter(|h| h.mid == mid && h.code == (2 << 5 | 4))
                    .map(|_| ()),
                Err(_) => None,
            })
        },
    )
}

/// Sends PULL_DATA until the gateway's LoRaWAN server answers PULL_ACK, as
/// the generators' packet forwarder (the same EUI: a second one would be a
/// live concentrator the deduplication window waits for).
fn wait_for_lorawan(port: u16, gateway: &mut Process) -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(("127.0.0.1", port))?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut token = 0u16;
    poll(
        "the gateway answering GWMP",
        GATEWAY_READY,
        Duration::from_millis(50),
        || {
            if let Ok(Some(status)) = gateway.child.try_wait() {
                bail!("sluice exited ({status}) before answering");
            }
            token = token.wrapping_add(1);
            let pull = sluice_lorawan::gwmp::pull_data(token.to_be_bytes(), GATEWAY_EUI);
            let _ = socket.send(&pull);
            let mut answer = [0u8; 64];
            let [t0, t1] = token.to_be_bytes();
            Ok(match socket.recv(&mut answer) {
                Ok(4) if answer[..4] == [2, t0, t1, sluice_lorawan::gwmp::ident::PULL_ACK] => {
                    Some(())
                }
                _ => None,
            })
        },
    )
}

/// Runs one generator process to its end, sampling the gateway's memory.
#[allow(clippy::too_many_arguments)]
fn run_generator(
    opts: &Options,
    target: SocketAddr,
    prefix: &str,
    first: u32,
    scenario: &Scenario,
    rate: Option<f64>,
    watch: Option<u32>,
    dir: &Path,
) -> Result<(LoadReport, Memory)> {
    let mut command = Command::new(&opts.loadgen);
    command
        .arg("coap")
        .arg("--protocol")
        .arg(match scenario.protocol {
            Protocol::Coap => "coap",
            Protocol::Gwmp => "gwmp",
        })
        .arg("--first-device")
        .arg(first.to_string())
        .arg("--target")
        .arg(target.to_string())
        .arg("--devices")
        .arg(opts.devices.to_string())
        .arg("--prefix")
        .arg(prefix)
        .arg("--seconds")
        .arg(opts.seconds.to_string())
        .arg("--timeout-ms")
        .arg(ANSWER_TIMEOUT.as_millis().to_string());
    if !scenario.confirmable {
        command.arg("--non");
    }
    match (scenario.pace, rate) {
        (Pace::Closed(n), _) => command.arg("--in-flight").arg(n.to_string()),
        (_, Some(r)) | (Pace::Open(r), None) => command.arg("--rate").arg(r.to_string()),
        (Pace::OpenHalfMax, None) => bail!("half the max of nothing measured yet"),
    };
    let generator = Process::start(
        "generator",
        &mut command,
        &dir.join(format!("{prefix}generator.log")),
    )?;
    let deadline = Instant::now()
        + Duration::from_secs_f64(opts.seconds)
        + ANSWER_TIMEOUT
        + Duration::from_secs(20);
    let mut most = Memory::default();
    loop {
        if let Some(pid) = watch
            && let Ok(m) = Memory::read(pid)
        {
            most.rss_kb = most.rss_kb.max(m.rss_kb);
            most.hwm_kb = most.hwm_kb.max(m.hwm_kb);
        }
        match generator.lines.recv_timeout(MEMORY_POLL) {
            Ok(line) => {
                let report = serde_json::from_str(&line)
                    .with_context(|| format!("generator said `{line}`"))?;
                return Ok((report, most));
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => bail!(
                "the generator gave no report (see {})",
                dir.join(format!("{prefix}generator.log")).display()
            ),
        }
    }
}

/// Runs everything and prints the tables.
pub fn run(opts: &Options) -> Result<Report> {
    if !opts.sluice.is_file() {
        bail!(
            "no sluice binary at {} (cargo build --release -p sluice, or --sluice PATH)",
            opts.sluice.display()
        );
    }
    std::fs::create_dir_all(&opts.dir).with_context(|| format!("create {}", opts.dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix("sluice-e2e-")
        .tempdir_in(&opts.dir)
        .context("temporary folder")?;
    tmp.disable_cleanup(opts.keep);
    let dir = tmp.path();
    let mut report = Report {
        load_average: (load_average(), String::new()),
        ..Report::default()
    };
    eprintln!("logs and database in {}", dir.display());

    if opts.baselines {
        // The generator's own ceiling at each window the scenarios use.
        let mut windows: Vec<u32> = opts
            .scenarios
            .iter()
            .filter_map(|s| match (s.protocol, s.pace) {
                (Protocol::Coap, Pace::Closed(n)) => Some(n),
                _ => None,
            })
            .collect();
        windows.sort_unstable();
        windows.dedup();
        for window in windows {
            let sink = Process::start(
                "sink",
                Command::new(&opts.loadgen).args(["sink", "--listen", "127.0.0.1:0"]),
                &dir.join("sink.log"),
            )?;
            let port: serde_json::Value = sink.json(Duration::from_secs(10))?;
            let port = port["port"]
                .as_u64()
                .ok_or_else(|| anyhow!("sink gave no port"))? as u16;
            let before = CpuSample::read(sink.pid())?;
            let scenario = Scenario {
                protocol: Protocol::Coap,
                confirmable: true,
                pace: Pace::Closed(window),
            };
            let (load, _) = run_generator(
                opts,
                SocketAddr::from(([127, 0, 0, 1], port)),
                &format!("sink{window}-"),
                0,
                &scenario,
                None,
                None,
                dir,
            )?;
            let sink_cpu = CpuSample::read(sink.pid())?
                .ticks
                .saturating_sub(before.ticks);
            eprintln!(
                "sink, {window} in flight: {:.0} requests/s",
                load.acked as f64 / load.secs
            );
            report
                .sink
                .push((window, load, ticks_to_duration(sink_cpu).as_micros() as u64));
        }
    }

    let mqtt = free_tcp_port()?;
    let broker = start_broker(dir, mqtt)?;
    let mut subscriber = Process::start(
        "subscriber",
        Command::new(&opts.loadgen).args(["subscribe", "--port", &mqtt.to_string()]),
        &dir.join("subscriber.log"),
    )?;
    let _: serde_json::Value = subscriber
        .json(Duration::from_secs(10))
        .context("subscriber ready")?;
    let coap = free_udp_port()?;
    let lorawan = free_udp_port()?;
    let config = write_config(opts, dir, mqtt, coap, lorawan)?;
    let mut gateway = Process::start(
        "sluice",
        Command::new(&opts.sluice)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("SLUICE_LOG", "warn"),
        &dir.join("sluice.log"),
    )?;
    wait_for_gateway(coap, &mut gateway)?;
    poll("the probe reading upstream", ARRIVAL, ARRIVAL_POLL, || {
        let s: SubscriberStats = subscriber.ask("stats")?;
        Ok((s.others > 0).then_some(()))
    })?;
    if opts.scenarios.iter().any(|s| s.protocol == Protocol::Gwmp) {
        wait_for_lorawan(lorawan, &mut gateway)?;
    }
    report.idle_memory = Memory::read(gateway.pid())?;
    let mut closed_con_rates = Vec::new();

    for (i, scenario) in opts.scenarios.iter().enumerate() {
        let rate = match scenario.pace {
            Pace::OpenHalfMax => {
                let best = closed_con_rates.iter().copied().fold(0.0, f64::max);
                if best <= 0.0 {
                    bail!(
                        "{}: no closed-loop CON scenario before it",
                        scenario.label()
                    );
                }
                Some((best / 2.0).round())
            }
            _ => None,
        };
        let label = match rate {
            Some(r) => format!("{} ({r:.0} /s)", scenario.label()),
            None => scenario.label(),
        };
        eprintln!("scenario: {label}");
        let _: serde_json::Value = subscriber.ask("mark")?;
        let sub0: SubscriberStats = subscriber.ask("stats")?;
        let (sluice0, broker0) = (
            CpuSample::read(gateway.pid())?,
            CpuSample::read(broker.pid())?,
        );
        let machine0 = MachineCpu::read()?;
        let start = Instant::now();
        let start_us = unix_us();
        let port = match scenario.protocol {
            Protocol::Coap => coap,
            Protocol::Gwmp => lorawan,
        };
        let (load, memory) = run_generator(
            opts,
            SocketAddr::from(([127, 0, 0, 1], port)),
            &format!("s{i}-"),
            first_device(opts, i)?,
            scenario,
            rate,
            Some(gateway.pid()),
            dir,
        )?;
        if scenario.protocol == Protocol::Coap
            && scenario.confirmable
            && matches!(scenario.pace, Pace::Closed(_))
            && load.secs > 0.0
        {
            closed_con_rates.push(load.acked as f64 / load.secs);
        }
        // CoAP: every `2.04` is a durable reading. GWMP: a PUSH_ACK only
        // says the datagram arrived; still, every acknowledged uplink is
        // expected upstream (loopback drops none).
        let expected = sub0.unique + load.acked;
        let sub1 = match poll("readings upstream", ARRIVAL, ARRIVAL_POLL, || {
            let s: SubscriberStats = subscriber.ask("stats")?;
            Ok((s.unique >= expected).then_some(s))
        }) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("warning: {e}");
                subscriber.ask("stats")?
            }
        };
        let window = start.elapsed();
        let (sluice1, broker1) = (
            CpuSample::read(gateway.pid())?,
            CpuSample::read(broker.pid())?,
        );
        let machine1 = MachineCpu::read()?;
        let batches = sub1.batches.saturating_sub(sub0.batches).max(1) as f64;
        let arrived = sub1.unique - sub0.unique;
        let us = |t: u64| ticks_to_duration(t).as_micros() as u64;
        report.scenarios.push(Outcome {
            label,
            arrived,
            duplicates: sub1.duplicates - sub0.duplicates,
            gaps: sub1.gaps.saturating_sub(sub0.gaps),
            upstream_secs: sub1.last_arrival_us.saturating_sub(start_us) as f64 / 1e6,
            e2e: sub1.latency,
            window_secs: window.as_secs_f64(),
            sluice_cpu_us: us(sluice1.ticks.saturating_sub(sluice0.ticks)),
            broker_cpu_us: us(broker1.ticks.saturating_sub(broker0.ticks)),
            subscriber_cpu_us: sub1.cpu_us.saturating_sub(sub0.cpu_us),
            machine_busy_us: us(machine1.busy.saturating_sub(machine0.busy)),
            machine_idle_us: us(machine1.idle.saturating_sub(machine0.idle)),
            threads: sluice1
                .by_thread_name_since(&sluice0)
                .into_iter()
                .map(|(n, t)| (n, us(t)))
                .collect(),
            memory,
            batch_bytes: (sub1.bytes - sub0.bytes) as f64 / batches,
            batch_records: (arrived + sub1.others - sub0.others) as f64 / batches,
            load,
        });
    }

    if opts.baselines {
        let bytes = report
            .scenarios
            .iter()
            .map(|o| o.batch_bytes)
            .fold(0.0, f64::max)
            .max(1000.0) as usize;
        let sub0: SubscriberStats = subscriber.ask("stats")?;
        let broker0 = CpuSample::read(broker.pid())?;
        let start = Instant::now();
        let publisher = Process::start(
            "publisher",
            Command::new(&opts.loadgen).args([
                "publish",
                "--port",
                &mqtt.to_string(),
                "--bytes",
                &bytes.to_string(),
                "--seconds",
                &opts.seconds.to_string(),
            ]),
            &dir.join("publisher.log"),
        )?;
        let published: PublishReport =
            publisher.json(Duration::from_secs_f64(opts.seconds + 30.0))?;
        // PUBACK only says the broker has it: wait until the subscriber has it too.
        let delivered = poll(
            "baseline messages at the subscriber",
            ARRIVAL,
            ARRIVAL_POLL,
            || {
                let s: SubscriberStats = subscriber.ask("stats")?;
                Ok((s.baseline_messages >= sub0.baseline_messages + published.acked).then_some(s))
            },
        )
        .unwrap_or_else(|e| {
            eprintln!("warning: {e}");
            sub0.clone()
        });
        let secs = start.elapsed().as_secs_f64();
        let broker_cpu = ticks_to_duration(
            CpuSample::read(broker.pid())?
                .ticks
                .saturating_sub(broker0.ticks),
        );
        report.publish = Some(PublishBaseline {
            delivered: delivered
                .baseline_messages
                .saturating_sub(sub0.baseline_messages),
            secs,
            broker_cpu_us: broker_cpu.as_micros() as u64,
            subscriber_cpu_us: delivered.cpu_us.saturating_sub(sub0.cpu_us),
            publisher: published,
        });
    }
    drop(gateway);
    drop(subscriber);
    drop(broker);
    report.load_average.1 = load_average();
    print_tables(opts, &report);
    Ok(report)
}

/// The first three fields of `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Refusals with their codes: `521 × 5.03`.
fn refusals(l: &LoadReport) -> String {
    if l.refused.is_empty() {
        return "0".into();
    }
    let codes: Vec<String> = l
        .refused
        .iter()
        .map(|(c, n)| format!("{n} × {c}"))
        .collect();
    codes.join(", ")
}

fn pct(cpu_us: u64, secs: f64) -> String {
    if secs <= 0.0 {
        "–".into()
    } else {
        format!("{:.0}%", cpu_us as f64 / 1e4 / secs)
    }
}

/// Prints the run as markdown.
pub fn print_tables(opts: &Options, report: &Report) {
    println!(
        "## End to end: CoAP CON/NON → {}queue (`process`) → MQTT QoS 1 → mosquitto → subscriber; GWMP (LoRaWAN ABP uplinks) → `cayenne-lpp` → queue → the same\n\n{} s per scenario, {} devices, every process on the same machine; load average {} at the start, {} at the end. CPU as % of one core (the machine has as many hundreds as cores; \"machine\" counts every process on it, also those outside the benchmark) over the scenario's window (from the generator's start until every acknowledged reading arrived upstream); the generator's over its own run.\n",
        match opts.functions {
            Functions::None => "(no function) ",
            Functions::Scale => "`scale` → ",
            Functions::Chain => "`scale` → `threshold` + `deadband` → ",
        },
        opts.seconds,
        opts.devices,
        report.load_average.0,
        report.load_average.1,
    );
    println!(
        "| scenario | acked/s | arrived/s | sent | acked | refused | timed out | arrived | dup | gaps | ack p50/p99/p999 ms | e2e p50/p99/p999 ms | Sluice CPU | µs/reading | mosquitto | generator | subscriber | RSS max / HWM MiB | records/batch | machine busy / idle |"
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---|---:|---|"
    );
    for o in &report.scenarios {
        let l = &o.load;
        println!(
            "| {} | **{:.0}** | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} / {} / {} | {} | **{:.1}** | {} | {} | {} | {:.1} / {:.1} | {:.1} | {} / {} |",
            o.label,
            l.acked as f64 / l.secs.max(1e-9),
            o.arrived as f64 / o.upstream_secs.max(1e-9),
            l.sent,
            l.acked,
            refusals(l),
            l.timed_out,
            o.arrived,
            o.duplicates,
            o.gaps,
            ms(l.ack.p50_us),
            ms(l.ack.p99_us),
            ms(l.ack.p999_us),
            ms(o.e2e.p50_us),
            ms(o.e2e.p99_us),
            ms(o.e2e.p999_us),
            pct(o.sluice_cpu_us, o.window_secs),
            o.sluice_cpu_us as f64 / o.arrived.max(1) as f64,
            pct(o.broker_cpu_us, o.window_secs),
            pct(l.cpu_us, l.secs),
            pct(o.subscriber_cpu_us, o.window_secs),
            o.memory.rss_kb as f64 / 1024.0,
            o.memory.hwm_kb as f64 / 1024.0,
            o.batch_records,
            pct(o.machine_busy_us, o.window_secs),
            pct(o.machine_idle_us, o.window_secs),
        );
    }
    println!(
        "\nIdle before the first scenario: VmRSS {:.1} MiB.\n",
        report.idle_memory.rss_kb as f64 / 1024.0
    );
    // Per thread: rows are thread names, columns scenarios.
    let mut names: BTreeMap<&str, ()> = BTreeMap::new();
    for o in &report.scenarios {
        for (n, _) in &o.threads {
            names.insert(n, ());
        }
    }
    println!("Sluice CPU per thread (`comm`), % of one core (µs per reading):\n");
    let heads: Vec<&str> = report.scenarios.iter().map(|o| o.label.as_str()).collect();
    println!("| thread | {} |", heads.join(" | "));
    println!("|---|{}", "---:|".repeat(heads.len()));
    for name in names.keys() {
        let cells: Vec<String> = report
            .scenarios
            .iter()
            .map(|o| {
                let us = o
                    .threads
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, t)| *t);
                format!(
                    "{} ({:.1})",
                    pct(us, o.window_secs),
                    us as f64 / o.arrived.max(1) as f64
                )
            })
            .collect();
        println!("| `{name}` | {} |", cells.join(" | "));
    }
    if !report.sink.is_empty() {
        println!(
            "\nBaseline: the generator against the do-nothing sink (CON, piggybacked `2.04` at once):\n"
        );
        println!(
            "| in flight | requests/s | ack p50/p99/p999 ms | generator CPU | sink CPU | timed out |"
        );
        println!("|---:|---:|---|---:|---:|---:|");
        for (window, l, sink_us) in &report.sink {
            println!(
                "| {window} | **{:.0}** | {} / {} / {} | {} | {} | {} |",
                l.acked as f64 / l.secs.max(1e-9),
                ms(l.ack.p50_us),
                ms(l.ack.p99_us),
                ms(l.ack.p999_us),
                pct(l.cpu_us, l.secs),
                pct(*sink_us, l.secs),
                l.timed_out
            );
        }
    }
    if let Some(b) = &report.publish {
        let p = &b.publisher;
        let per_batch = report
            .scenarios
            .iter()
            .map(|o| o.batch_records)
            .fold(0.0, f64::max);
        println!(
            "\nBaseline: a plain QoS 1 publisher (rumqttc, 100 in flight) of {}-byte payloads (the largest average batch above) to the same mosquitto, which forwards them to the subscriber: {} acknowledged in {:.2} s ({:.0}/s), **{} delivered, {:.0} messages/s** through the broker ({:.0} readings/s at {:.0} records per batch); CPU: publisher {}, mosquitto {}, subscriber {}.",
            p.bytes,
            p.acked,
            p.secs,
            p.acked as f64 / p.secs.max(1e-9),
            b.delivered,
            b.delivered as f64 / b.secs.max(1e-9),
            b.delivered as f64 / b.secs.max(1e-9) * per_batch,
            per_batch,
            pct(p.cpu_us, p.secs),
            pct(b.broker_cpu_us, b.secs),
            pct(b.subscriber_cpu_us, b.secs),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse() {
        assert_eq!(
            Scenario::parse("con:closed:32").ok(),
            Some(Scenario {
                protocol: Protocol::Coap,
                confirmable: true,
                pace: Pace::Closed(32)
            })
        );
        assert_eq!(
            Scenario::parse("non:open:100").ok(),
            Some(Scenario {
                protocol: Protocol::Coap,
                confirmable: false,
                pace: Pace::Open(100.0)
            })
        );
        assert_eq!(
            Scenario::parse("con:open:half").ok(),
            Some(Scenario {
                protocol: Protocol::Coap,
                confirmable: true,
                pace: Pace::OpenHalfMax
            })
        );
        assert_eq!(
            Scenario::parse("gwmp:open:5000").ok(),
            Some(Scenario {
                protocol: Protocol::Gwmp,
                confirmable: false,
                pace: Pace::Open(5000.0)
            })
        );
        assert_eq!(
            Scenario::parse("gwmp:open:5000").map(|s| s.label()).ok(),
            Some("GWMP, 5000 /s".to_owned())
        );
        for bad in [
            "con:closed",
            "ack:closed:1",
            "con:sideways:1",
            "con:closed:x",
            "gwmp:open:half",
            "gwmp:closed:64",
        ] {
            assert!(Scenario::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(default_scenarios().len(), 5);
    }
}
