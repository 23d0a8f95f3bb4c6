//! The adapter against an independent LoRaWAN implementation: frames built
//! by the npm package lora-packet (installed by `scripts/install-test-deps.sh`
//! into `tests/peers`), sent over loopback as GWMP by a test concentrator
//! (`tests/peers/concentrator.js`) that checks the acknowledgements and the
//! PULL_RESP it gets, decrypts the JoinAccept and derives the session keys.

use sluice_adapter_common::testing::{CollectingSink, Controls, context, wait_until};
use sluice_adapter_common::{Adapter, Rejection};
use sluice_event::Value;
use sluice_lorawan::LorawanConfig;
use sluice_lorawan::keys::Eui64;
use sluice_lorawan::rejection::Reject;
use sluice_lorawan::session::{Session, session_key};
use std::time::Duration;

mod peers;

use peers::concentrator;

const CONFIG: &str = r#"
listen = "127.0.0.1:0"
region = "eu868"
net_id = "000013"
dedup_window = "100 ms"

[[devices]]
dev_eui = "0011223344556677"
activation = "otaa"
join_eui = "70b3d57ed0000000"
app_key = "2b7e151628aed2a6abf7158809cf4f3c"

[[devices]]
dev_eui = "00000000000000ab"
activation = "abp"
dev_addr = "26011b01"
nwk_skey = "000102030405060708090a0b0c0d0e0f"
app_skey = "101112131415161718191a1b1c1d1e1f"
"#;

/// Starts the adapter on a free port over `sink`.
async fn start(sink: &CollectingSink) -> (u16, Controls, tokio::task::JoinHandle<()>) {
    let config: LorawanConfig = toml::from_str(CONFIG).expect("config");
    assert!(config.validate().is_empty());
    let opened = config.open().await.expect("binds");
    let port = match opened.holds()[0] {
        sluice_adapter_common::Resource::Udp(a) => a.port(),
        ref other => panic!("holds {other}"),
    };
    let (ctx, controls) = context(sink.clone());
    let task = tokio::spawn(async move {
        opened.run(ctx).await.expect("runs");
    });
    (port, controls, task)
}

async fn stop(controls: &Controls, task: tokio::task::JoinHandle<()>) {
    let _ = controls.stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops")
        .expect("no panic");
}

fn step<'a>(lines: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {lines:?}"))
}

fn meta(e: &sluice_event::Event, key: &str) -> Value {
    e.meta
        .iter()
        .find(|m| m.key == key)
        .map(|m| m.value.clone())
        .unwrap_or_else(|| panic!("no meta {key}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otaa_join_is_answered_in_rx1_with_keys_lora_packet_derives_too() {
    let sink = CollectingSink::new();
    let (port, controls, task) = start(&sink).await;
    let lines = concentrator(port, &["join"]).await;
    let join = step(&lines, "join");
    // JOIN_ACCEPT_DELAY1 after the uplink's tmst, on the uplink's channel and data rate.
    assert_eq!(join["delay_us"], 5_000_000);
    assert_eq!(join["freq"], 868.1);
    assert_eq!(join["datr"], "SF7BW125");
    assert_eq!(join["powe"], 14);
    assert_eq!(join["ipol"], true);
    assert_eq!(
        join["mic_ok"], true,
        "lora-packet checks the JoinAccept's MIC"
    );
    assert_eq!(join["rx_delay"], "01");
    assert_eq!(
        join["cflist"].as_str().map(str::len),
        Some(32),
        "EU868 CFList"
    );
    let stored = sink.state();
    let session = Session::decode(
        &stored[&session_key(Eui64([0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]))],
    )
    .expect("session committed");
    assert_eq!(join["dev_addr"], format!("{:08x}", session.dev_addr));
    assert_eq!(
        join["nwk_skey"],
        sluice_lorawan::keys::to_hex(&session.nwk_skey.0)
    );
    assert_eq!(
        join["app_skey"],
        sluice_lorawan::keys::to_hex(&session.app_skey.0)
    );
    assert_eq!(session.dev_addr >> 25, 0x13, "NwkID from the NetID");

    wait_until(Duration::from_secs(5), "the OTAA uplink", || {
        sink.len() == 1
    })
    .await;
    let e = &sink.events()[0];
    assert_eq!(e.subject, "lorawan/0011223344556677/up");
    assert_eq!(
        e.raw.as_deref(),
        Some(&[0x03, 0x67, 0x01, 0x10, 0x03, 0x68, 0x0a][..])
    );
    assert_eq!(
        meta(e, "gateways"),
        Value::Number(2.0),
        "both receivers merged"
    );
    assert_eq!(
        meta(e, "gateway"),
        Value::Text("aa555a0000000001".into()),
        "best first"
    );
    assert_eq!(
        meta(e, "gw1_gateway"),
        Value::Text("aa555a0000000002".into())
    );
    assert_eq!(meta(e, "fcnt"), Value::Number(1.0));
    let c = controls.counters.clone();
    wait_until(Duration::from_secs(5), "the replayed DevNonce", || {
        c.rejected(Reject::ReplayedDevNonce) == 1
    })
    .await;
    assert_eq!(
        Reject::ReplayedDevNonce.key(),
        "exchange/replayed-dev-nonce"
    );
    stop(&controls, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abp_counters_survive_a_restart_and_replays_are_refused() {
    let sink = CollectingSink::new();
    let (port, controls, task) = start(&sink).await;
    let lines = concentrator(port, &["abp", "1", "confirmed"]).await;
    let ack = step(&lines, "ack");
    assert_eq!(
        ack["delay_us"], 1_000_000,
        "RX1 one second after the uplink"
    );
    assert_eq!(ack["freq"], 868.1);
    assert_eq!(ack["ack"], true);
    assert_eq!(ack["mic_ok"], true, "lora-packet checks the downlink's MIC");
    assert_eq!(ack["fcnt"], 0);
    wait_until(Duration::from_secs(5), "the ABP uplink", || sink.len() == 1).await;
    stop(&controls, task).await;

    // The same sink stands for the queue's SQLite: a new run loads the counters.
    let (port, controls, task) = start(&sink).await;
    concentrator(port, &["abp", "1"]).await;
    let c = controls.counters.clone();
    wait_until(
        Duration::from_secs(5),
        "the same frame again refused",
        || c.rejected(Reject::Retransmission) == 1,
    )
    .await;
    concentrator(port, &["abp", "0"]).await;
    wait_until(Duration::from_secs(5), "an older counter refused", || {
        c.rejected(Reject::ReplayedFcnt) == 1
    })
    .await;
    concentrator(port, &["abp", "2"]).await;
    wait_until(Duration::from_secs(5), "the next uplink", || {
        sink.len() == 2
    })
    .await;
    assert_eq!(meta(&sink.events()[1], "fcnt"), Value::Number(2.0));
    stop(&controls, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_counted_by_reason_and_the_gateway_keeps_serving() {
    let sink = CollectingSink::new();
    let (port, controls, task) = start(&sink).await;
    concentrator(port, &["bad"]).await;
    let c = controls.counters.clone();
    let all = [
        Reject::BadMic,
        Reject::UnknownDevAddr,
        Reject::MalformedFrame,
        Reject::InvalidJson,
        Reject::WrongVersion,
        Reject::UnknownIdent,
    ];
    wait_until(Duration::from_secs(5), "every bad datagram counted", || {
        // Version 1 and the garbage (`g` is no version 2) both count as wrong-version.
        all.iter()
            .all(|r| c.rejected(*r) == 1 + u64::from(*r == Reject::WrongVersion))
    })
    .await;
    assert!(sink.is_empty());
    concentrator(port, &["abp", "1"]).await;
    wait_until(
        Duration::from_secs(5),
        "a good uplink after the bad ones",
        || sink.len() == 1,
    )
    .await;
    stop(&controls, task).await;
}
