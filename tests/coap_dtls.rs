//! CoAP over DTLS against libcoap's OpenSSL client: pre-shared keys (from
//! the config and from a key file) and certificates signed by a device CA,
//! a plain listener beside the secure one, wrong keys and untrusted
//! certificates turned away and counted, and the identity bound to the
//! device id in the path. Readings followed to a real mosquitto.

mod support;

use sluice::Runtime;
use std::net::SocketAddr;
use std::time::Duration;
use support::coap::{self, Answer};
use support::tls::Pki;
use support::{Broker, Collector, config, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// One device key; a wrong key shows only when the handshake times out,
/// so the timeout is short.
const ONE_KEY: &str = "psk = { \"sensor-1\" = \"right\" }\nhandshake_timeout = \"1 s\"";

/// A runtime with plain CoAP and DTLS on free loopback ports.
async fn start(dir: &std::path::Path, port: u16, dtls: &str) -> (Runtime, SocketAddr, SocketAddr) {
    let extra = format!(
        "[coap]\nlisten = [\"127.0.0.1:0\"]\n[coap.dtls]\nlisten = [\"127.0.0.1:0\"]\n{dtls}\n"
    );
    let runtime = Runtime::start(config(dir, port, "", &extra))
        .await
        .expect("start");
    let addrs = runtime.udp_addrs("coap");
    (runtime, addrs[0], addrs[1])
}

/// POSTs a JSON reading over DTLS with `credentials`.
fn secure_post(
    addr: SocketAddr,
    device: &str,
    payload: &str,
    credentials: &[&str],
) -> Result<Answer, String> {
    let mut args = vec!["-m", "post", "-t", "50", "-e", payload];
    args.extend_from_slice(credentials);
    coap::secure_request(addr, &format!("r/{device}"), &args)
}

/// The devices of the records received, sorted.
fn devices(collector: &Collector) -> Vec<String> {
    let received = collector.received.lock().expect("lock");
    let mut devices: Vec<String> = received
        .records
        .iter()
        .filter_map(|r| r["device"].as_str().map(str::to_owned))
        .collect();
    devices.sort();
    devices
}

/// POSTs a JSON reading `{"t": n}` for `device` over DTLS as `identity` with `key`.
fn psk_post(
    addr: SocketAddr,
    device: &str,
    n: u32,
    identity: &str,
    key: &str,
) -> Result<Answer, String> {
    secure_post(
        addr,
        device,
        &format!(r#"{{"t": {n}}}"#),
        &["-u", identity, "-k", key],
    )
}

fn rejected(runtime: &Runtime, reason: &str) -> u64 {
    let c = runtime.metrics().snapshot().adapters["coap"].clone();
    c.rejected.get(reason).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psk_devices_post_over_dtls_beside_plain_coap() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("psk.toml");
    std::fs::write(&keys, "\"sensor-2\" = \"hex:6b65792d32\"\n").expect("key file");
    let dtls = format!(
        "psk = {{ \"sensor-1\" = \"correct horse\" }}\npsk_file = \"{}\"",
        keys.display()
    );
    let (runtime, plain, secure) = start(dir.path(), broker.port, &dtls).await;
    let answers = tokio::task::spawn_blocking(move || {
        vec![
            psk_post(secure, "sensor-1", 1, "sensor-1", "correct horse"),
            // The file's key is in hex: the bytes of `key-2`.
            psk_post(secure, "sensor-2", 2, "sensor-2", "key-2"),
            // Authenticated as sensor-1, posting for another device.
            psk_post(secure, "sensor-9", 9, "sensor-1", "correct horse"),
            Ok(coap::post(plain, "plain-1", 50, r#"{"t": 3}"#)),
        ]
    })
    .await
    .expect("clients");
    let codes: Vec<String> = answers
        .iter()
        .map(|a| {
            a.as_ref()
                .map_or_else(|e| format!("no answer: {e}"), |a| a.code.clone())
        })
        .collect();
    assert_eq!(codes, ["2.04", "2.04", "4.03", "2.04"], "{answers:#?}");
    let mismatch = answers[2]
        .as_ref()
        .map(|a| a.line.clone())
        .unwrap_or_default();
    assert!(mismatch.contains("may not post for device"), "{mismatch}");
    wait_until(WAIT, "three readings upstream", || collector.unique() == 3).await;
    let devices = devices(&collector);
    assert_eq!(devices, ["plain-1", "sensor-1", "sensor-2"]);
    assert_eq!(rejected(&runtime, "authenticate/identity-mismatch"), 1);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_or_unknown_identity_fails_the_handshake_and_is_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, _, secure) = start(dir.path(), support::free_port(), ONE_KEY).await;
    let answers = tokio::task::spawn_blocking(move || {
        vec![
            psk_post(secure, "sensor-1", 1, "sensor-1", "wrong"),
            psk_post(secure, "stranger", 1, "stranger", "right"),
            psk_post(secure, "sensor-1", 1, "sensor-1", "right"),
        ]
    })
    .await
    .expect("clients");
    assert!(answers[0].is_err(), "wrong key: {:?}", answers[0]);
    assert!(answers[1].is_err(), "unknown identity: {:?}", answers[1]);
    assert_eq!(
        answers[2].as_ref().map(|a| a.code.as_str()),
        Ok("2.04"),
        "the gateway still serves a device with the right key"
    );
    wait_until(WAIT, "two failed handshakes counted", || {
        rejected(&runtime, "authenticate/handshake-failed") == 2
    })
    .await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_with_certificates_from_the_device_ca_post_over_dtls() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let pki = Pki::generate();
    let dir = tempfile::tempdir().expect("tempdir");
    let dtls = format!(
        "certificate = \"{}\"\nprivate_key = \"{}\"\nclient_ca = \"{}\"",
        pki.server.cert.display(),
        pki.server.key.display(),
        pki.ca.display()
    );
    let (runtime, _, secure) = start(dir.path(), broker.port, &dtls).await;
    let path = |p: &std::path::Path| p.display().to_string();
    let (ca, cert, key) = (path(&pki.ca), path(&pki.client.cert), path(&pki.client.key));
    let (rogue_cert, rogue_key) = (path(&pki.rogue_client.cert), path(&pki.rogue_client.key));
    let answers = tokio::task::spawn_blocking(move || {
        vec![
            // CN=gw-test, signed by the device CA; the gateway's certificate checked against it.
            secure_post(
                secure,
                "gw-test",
                r#"{"t": 1}"#,
                &["-c", &cert, "-j", &key, "-C", &ca],
            ),
            // Same CN, signed by a CA the gateway does not trust.
            secure_post(
                secure,
                "gw-test",
                r#"{"t": 2}"#,
                &["-c", &rogue_cert, "-j", &rogue_key, "-C", &ca],
            ),
        ]
    })
    .await
    .expect("clients");
    assert_eq!(
        answers[0].as_ref().map(|a| a.code.as_str()),
        Ok("2.04"),
        "{:?}",
        answers[0]
    );
    assert!(
        answers[1].is_err(),
        "untrusted certificate: {:?}",
        answers[1]
    );
    wait_until(WAIT, "the reading upstream", || collector.unique() == 1).await;
    assert_eq!(devices(&collector), ["gw-test"]);
    wait_until(WAIT, "the untrusted certificate counted", || {
        rejected(&runtime, "authenticate/handshake-failed") == 1
    })
    .await;
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_mangled_handshakes_leave_the_dtls_listener_serving() {
    use sluice_adapter_common::random::Random;
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, _, secure) = start(dir.path(), support::free_port(), ONE_KEY).await;
    let c = |runtime: &Runtime| runtime.metrics().snapshot().adapters["coap"].clone();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    // A ClientHello header: handshake record, DTLS 1.2, epoch 0, then
    // message type 1; the rest is random.
    let hello = [22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 1];
    let mut random = Random::from_seed(9);
    let mut sent = 0u64;
    // In bursts of 100, each received before the next, so that what is
    // tested is the listener's handling of garbage, not its backlog on a
    // busy machine.
    for burst in 0..20u64 {
        for i in 0..100u64 {
            let len = random.range(0, 200) as usize;
            let mut datagram: Vec<u8> = (0..len).map(|_| random.next_u64() as u8).collect();
            if (burst * 100 + i) % 2 == 0 {
                datagram.splice(0..0, hello);
            }
            socket
                .send_to(&datagram, secure)
                .expect("send to the DTLS listener");
            sent += 1;
        }
        wait_until(WAIT, "every datagram received", || {
            c(&runtime).messages_in >= sent
        })
        .await;
    }
    let answer =
        tokio::task::spawn_blocking(move || psk_post(secure, "sensor-1", 1, "sensor-1", "right"))
            .await
            .expect("client");
    assert_eq!(
        answer.as_ref().map(|a| a.code.as_str()),
        Ok("2.04"),
        "{answer:?}"
    );
    assert!(
        rejected(&runtime, "receive/no-session") > 0,
        "{:?}",
        c(&runtime)
    );
    assert_eq!(c(&runtime).events_accepted, 1, "only the real request");
    runtime.shutdown().await;
}
