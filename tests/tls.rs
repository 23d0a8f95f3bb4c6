//! `mqtts://` with X.509 client authentication, end to end: the real binary
//! drains its queue to a real mosquitto TLS listener that requires a client
//! certificate. The right certificate delivers everything; a certificate from
//! an untrusted CA, or a `ca` that did not sign the broker, is refused on
//! every attempt while the gateway keeps retrying and every record stays queued.

mod support;

use std::path::Path;
use std::time::Duration;
use support::tls::{self, CertKey, Pki};
use support::{Broker, Collector, Gateway, free_port, prefill, wait_until};

const RECORDS: u64 = 2_000;

/// A PKI, a broker with a plain listener (for the collector) and a TLS
/// listener requiring client certificates, the collector, and a prefilled queue.
struct Setup {
    pki: Pki,
    tls_port: u16,
    collector: Collector,
    dir: tempfile::TempDir,
    // Dropped last: stops mosquitto.
    _broker: Broker,
}

async fn setup() -> Setup {
    let pki = Pki::generate();
    let plain_port = free_port();
    let tls_port = loop {
        let p = free_port();
        if p != plain_port {
            break p;
        }
    };
    let broker = Broker::start_with(plain_port, &pki.listener_lines(tls_port));
    tls::wait_for_port(tls_port);
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    prefill(dir.path(), RECORDS, "").await;
    assert_eq!(queued(dir.path()), RECORDS, "prefilled queue");
    Setup {
        pki,
        tls_port,
        collector,
        dir,
        _broker: broker,
    }
}

/// Records in the queue database of `dir`, over all streams.
fn queued(dir: &Path) -> u64 {
    sluice::queue::inspect::stats(&dir.join("queue.db"))
        .expect("queue stats")
        .iter()
        .map(|s| s.records)
        .sum()
}

/// Writes the TLS config for this setup and starts the real binary with it.
fn spawn(s: &Setup, ca: &Path, client: &CertKey) -> Gateway {
    let config = s.dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        tls::config_text(s.dir.path(), s.tls_port, ca, client),
    )
    .expect("write config");
    Gateway::spawn(&config)
}

/// The `error=` field of a gateway log line (up to the next field).
fn error_field(line: &str) -> &str {
    let after = line
        .split_once(" error=")
        .unwrap_or_else(|| panic!("no error= field in {line:?}"))
        .1;
    after.split(" retry_in_ms=").next().unwrap_or(after)
}

/// After the exit: the log says so once. The stderr reader thread may still
/// be catching up with the last lines when `wait` returns, hence the poll.
async fn stopped_cleanly(gateway: &Gateway) {
    wait_until(
        Duration::from_secs(5),
        "the `Stopped cleanly` log line",
        || gateway.log_count("Stopped cleanly") >= 1,
    )
    .await;
    assert_eq!(gateway.log_count("Stopped cleanly"), 1);
}

/// Runs the gateway with `ca` and `client` against a broker that must refuse
/// it: at least three failed, retried attempts, each for a TLS reason, nothing
/// delivered, a clean exit on SIGTERM and the whole queue still there.
/// Every logged error must contain `reason` (case-insensitive). Returns the
/// logged error of the first attempt.
async fn assert_refused_and_retried(
    s: &Setup,
    ca: &Path,
    client: &CertKey,
    reason: &str,
) -> String {
    const FAILED: &str = "MQTT connection failed";
    let mut gateway = spawn(s, ca, client);
    wait_until(
        Duration::from_secs(20),
        "three failed connection attempts",
        || gateway.log_count(FAILED) >= 3,
    )
    .await;
    assert!(
        gateway.is_running(),
        "the gateway keeps running and retrying"
    );
    assert_eq!(
        gateway.log_count("Connected to MQTT broker"),
        0,
        "the broker must never accept this client"
    );

    let failures: Vec<String> = gateway
        .log
        .lock()
        .expect("lock")
        .iter()
        .filter(|l| l.contains(FAILED))
        .cloned()
        .collect();
    let first = error_field(&failures[0]).to_owned();
    for line in &failures {
        let error = error_field(line).to_lowercase();
        assert!(
            error.contains(&reason.to_lowercase()),
            "a failed attempt must name the TLS reason `{reason}`, got: {line}"
        );
    }

    {
        let received = s.collector.received.lock().expect("lock");
        assert_eq!(received.unique(), 0, "nothing may reach the cloud");
        assert_eq!(received.batches, 0, "no batch may reach the cloud");
        assert!(received.status.is_none(), "not even a status message");
    }

    let status = gateway.terminate().expect("exit status");
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
    stopped_cleanly(&gateway).await;
    assert_eq!(
        queued(s.dir.path()),
        RECORDS,
        "every record stays queued while the broker refuses the gateway"
    );
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_client_certificate_delivers_everything() {
    let s = setup().await;
    let mut gateway = spawn(&s, &s.pki.ca, &s.pki.client);

    wait_until(
        Duration::from_secs(60),
        "every record at the subscriber over mqtts",
        || s.collector.unique() as u64 == RECORDS,
    )
    .await;
    assert!(
        gateway.log_count("Connected to MQTT broker") >= 1,
        "the log reports the connection"
    );
    assert_eq!(gateway.log_count("MQTT connection failed"), 0);
    wait_until(
        Duration::from_secs(10),
        "the online status at the subscriber",
        || {
            let received = s.collector.received.lock().expect("lock");
            received
                .status
                .as_ref()
                .is_some_and(|v| v["state"] == "online" && v["gateway"] == "gw-test")
        },
    )
    .await;
    // Deleted once acknowledged.
    wait_until(Duration::from_secs(10), "an empty queue", || {
        queued(s.dir.path()) == 0
    })
    .await;

    let status = gateway.terminate().expect("exit status");
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
    stopped_cleanly(&gateway).await;
    assert_eq!(s.collector.received.lock().expect("lock").duplicates(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_from_untrusted_ca_is_refused_and_retried() {
    let s = setup().await;
    let error = assert_refused_and_retried(&s, &s.pki.ca, &s.pki.rogue_client, "alert").await;
    eprintln!("gateway error with a client certificate from an untrusted CA: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_certificate_from_unknown_ca_is_refused_and_retried() {
    let s = setup().await;
    let error = assert_refused_and_retried(&s, &s.pki.rogue_ca, &s.pki.client, "certificate").await;
    eprintln!("gateway error with a `ca` that did not sign the broker: {error}");
}
