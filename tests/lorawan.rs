//! The LoRaWAN adapter through the whole gateway, against lora-packet (an
//! independent LoRaWAN implementation, driven by
//! `adapters/lorawan/tests/peers/concentrator.js`, which speaks GWMP v2 as a
//! packet forwarder does) and mosquitto. The real binary: confirmed ABP
//! uplinks carrying Cayenne LPP decoded by the standard `cayenne-lpp`
//! function; a gateway `stat` report upstream as health; LinkCheckReq
//! answered; SIGKILL between uplinks while the broker is away, then every
//! uplink the gateway acknowledged (its ACK goes out only once the uplink is
//! durable) arrives upstream once, the next counter is accepted and an old
//! one refused. In process: an application downlink through the downlink
//! handle goes out after the device's next uplink and lora-packet decrypts
//! it. Needs node, lora-packet, mosquitto (scripts/install-test-deps.sh).

mod support;

#[path = "../adapters/lorawan/tests/peers/mod.rs"]
mod peers;

use peers::concentrator;

use sluice_adapter_common::downlink::{Answer, Downlink, Value, Verb};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{Broker, Collector, Gateway, config_text, wait_until};

/// The ABP device of the concentrator script (its DevEUI is ours to choose).
const ABP_EUI: &str = "00000000000000ab";
const GATEWAY_EUI: &str = "aa555a0000000001";
/// Log filter: rejections (`sluice_lorawan`) and durable events.
const LOG: &str = "info,sluice_lorawan=debug";

/// The `[[functions]]` and `[lorawan]` sections, listening on `listen`.
fn lorawan_section(listen: &str) -> String {
    format!(
        r#"
[[functions]]
name = "cayenne-lpp"
module = "{dist}/cayenne-lpp.wasm"

[lorawan]
listen = "{listen}"
region = "eu868"
dedup_window = "50 ms"

[lorawan.profiles.sensor]
decoder = "cayenne-lpp"

[[lorawan.devices]]
dev_eui = "{ABP_EUI}"
activation = "abp"
profile = "sensor"
dev_addr = "26011b01"
nwk_skey = "000102030405060708090a0b0c0d0e0f"
app_skey = "101112131415161718191a1b1c1d1e1f"
"#,
        dist = support::functions::dist().display()
    )
}

/// The FCnts of the lines `step` printed.
fn acked(lines: &[serde_json::Value]) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l["step"] == "acked")
        .filter_map(|l| l["fcnt"].as_u64())
        .collect()
}

fn step<'a>(lines: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {lines:?}"))
}

/// Decoded uplinks upstream by FCnt: how many records, and the first one.
fn decoded(collector: &Collector) -> BTreeMap<u64, (u32, serde_json::Value)> {
    let received = collector.received.lock().expect("lock");
    let mut by_fcnt: BTreeMap<u64, (u32, serde_json::Value)> = BTreeMap::new();
    for r in received
        .records
        .iter()
        .filter(|r| r["device"] == ABP_EUI && r["subject"] != format!("lorawan/{ABP_EUI}/up"))
    {
        if let Some(f) = r["meta"]["fcnt"]["value"].as_f64() {
            by_fcnt
                .entry(f as u64)
                .and_modify(|e| e.0 += 1)
                .or_insert((1, r.clone()));
        }
    }
    by_fcnt
}

/// A UDP port on loopback that was free a moment ago.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

async fn started(gateway: &Gateway) {
    wait_until(Duration::from_secs(30), "the LoRaWAN adapter", || {
        gateway
            .log_lines("Adapter started")
            .iter()
            .any(|l| l.contains("lorawan"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_uplinks_keeps_counters_and_every_acknowledged_uplink_arrives_decoded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let port = free_udp_port();
    let config = dir.path().join("sluice.toml");
    let section = lorawan_section(&format!("127.0.0.1:{port}"));
    std::fs::write(
        &config,
        config_text(
            dir.path(),
            broker.port,
            "health_interval = \"200 ms\"",
            &section,
        ),
    )
    .expect("write config");
    let mut gateway = Gateway::spawn_logging(&config, LOG);
    started(&gateway).await;

    // Confirmed uplinks: each ACK (RX1, MIC checked by lora-packet) means durable.
    let mut durable = acked(&concentrator(port, &["confirmed", "1", "5"]).await);
    assert_eq!(durable, [1, 2, 3, 4, 5]);
    wait_until(Duration::from_secs(20), "decoded uplinks upstream", || {
        decoded(&collector).len() == 5
    })
    .await;

    // The gateway's stat report becomes a health record upstream.
    concentrator(port, &["stat"]).await;
    let subject = format!("lorawan/gateway/{GATEWAY_EUI}/stat");
    wait_until(Duration::from_secs(20), "gateway health upstream", || {
        let r = collector.received.lock().expect("lock");
        r.records.iter().any(|r| r["subject"] == subject)
    })
    .await;
    {
        let r = collector.received.lock().expect("lock");
        let stat = r
            .records
            .iter()
            .find(|r| r["subject"] == subject)
            .expect("stat record");
        assert_eq!(stat["device"], GATEWAY_EUI);
        let reading = |name: &str| {
            stat["readings"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == name))
                .map(|x| x["value"].clone())
                .unwrap_or_else(|| panic!("no {name} in {stat}"))
        };
        assert_eq!(reading("rx_received"), 12.0);
        assert_eq!(reading("rx_ok"), 10.0);
        assert_eq!(reading("tx_sent"), 2.0);
        assert_eq!(reading("latitude"), 46.24);
    }
    // And the concentrator's latest figures are in the gateway's health message.
    wait_until(Duration::from_secs(20), "gateway figures in health", || {
        let r = collector.received.lock().expect("lock");
        r.health.as_ref().is_some_and(|h| {
            let peer = &h["counters"]["adapters"]["lorawan"]["peers"][GATEWAY_EUI];
            peer["rx_ok"] == 10.0 && peer["rx_received"] == 12.0 && peer["ack_ratio"] == 100.0
        })
    })
    .await;

    // LinkCheckReq in FOpts: LinkCheckAns (CID 0x02, margin, one gateway) in RX1.
    let lines = concentrator(port, &["linkcheck", "6"]).await;
    let answer = step(&lines, "linkcheck");
    assert_eq!(answer["mic_ok"], true);
    assert_eq!(answer["delay_us"], 1_000_000);
    assert_eq!(answer["mtype"], "Unconfirmed Data Down");
    let fopts = answer["fopts"].as_str().expect("FOpts");
    assert_eq!(fopts.len(), 6, "{fopts}");
    assert!(fopts.starts_with("02") && fopts.ends_with("01"), "{fopts}");
    durable.push(6);

    // The broker goes away: what follows stays in the queue.
    broker.stop();
    durable.extend(acked(&concentrator(port, &["confirmed", "7", "12"]).await));
    assert_eq!(durable, (1..=12).collect::<Vec<u64>>());
    gateway.kill();

    broker.resume();
    let mut gateway = Gateway::spawn_logging(&config, LOG);
    started(&gateway).await;
    wait_until(
        Duration::from_secs(60),
        "every acknowledged uplink upstream",
        || decoded(&collector).len() == durable.len(),
    )
    .await;

    // After the restart: an old counter is refused, the last one again is
    // acknowledged again (not ingested), the next is accepted.
    concentrator(port, &["abp", "3"]).await;
    wait_until(Duration::from_secs(10), "the replay refused", || {
        gateway.log_count("replayed-fcnt") == 1
    })
    .await;
    assert_eq!(
        acked(&concentrator(port, &["confirmed", "12", "12"]).await),
        [12]
    );
    assert_eq!(
        acked(&concentrator(port, &["confirmed", "13", "13"]).await),
        [13]
    );
    durable.push(13);
    wait_until(Duration::from_secs(20), "the next uplink upstream", || {
        decoded(&collector).contains_key(&13)
    })
    .await;
    let status = gateway.terminate().expect("exit status");
    assert!(status.success(), "clean exit on SIGTERM, got {status}");

    let upstream = decoded(&collector);
    assert_eq!(upstream.keys().copied().collect::<Vec<u64>>(), durable);
    for (fcnt, (copies, record)) in &upstream {
        assert_eq!(*copies, 1, "uplink {fcnt} ingested once: {record}");
        assert_eq!(record["subject"], format!("fn/cayenne-lpp/{ABP_EUI}"));
        let temperature = &record["readings"][0];
        assert_eq!(temperature["name"], "temperature_1", "{record}");
        assert_eq!(temperature["unit"], "Cel");
        // The link check carried the script's fixed payload (27.2 °C).
        let expected = if *fcnt == 6 { 27.2 } else { *fcnt as f64 };
        let value = temperature["value"].as_f64().expect("a number");
        assert!((value - expected).abs() < 1e-9, "{record}");
        assert_eq!(record["meta"]["gateway"]["value"], GATEWAY_EUI);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_downlink_goes_out_after_the_next_uplink_and_lora_packet_decrypts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start();
    let config = support::config(dir.path(), broker.port, "", &lorawan_section("127.0.0.1:0"));
    let runtime = sluice::Runtime::start(config).await.expect("start");
    let port = runtime.udp_addrs("lorawan")[0].port();

    // Queued for the device; it can only go out after an uplink.
    let sent = tokio::spawn(runtime.downlink(
        "lorawan",
        Downlink::new(
            ABP_EUI,
            "5",
            Verb::Set,
            Value::Bytes(vec![0xca, 0xfe, 0x01]),
        ),
    ));
    let lines = concentrator(port, &["downlink", "1"]).await;
    let down = step(&lines, "downlink");
    assert_eq!(down["mtype"], "Unconfirmed Data Down");
    assert_eq!(
        down["mic_ok"], true,
        "lora-packet checks the downlink's MIC"
    );
    assert_eq!(down["fport"], 5);
    assert_eq!(
        down["payload"], "cafe01",
        "lora-packet decrypts it with the AppSKey"
    );
    assert_eq!(
        down["delay_us"], 1_000_000,
        "RX1 one second after the uplink"
    );
    assert_eq!(down["freq"], 868.1);
    assert_eq!(down["datr"], "SF7BW125");
    let answer = tokio::time::timeout(Duration::from_secs(10), sent)
        .await
        .expect("answered")
        .expect("no panic");
    assert_eq!(
        answer,
        Ok(Answer {
            status: "sent".into(),
            payload: Vec::new()
        }),
        "the concentrator's TX_ACK is the answer"
    );
    // An FPort outside 1-223 is refused at once.
    let refused = runtime
        .downlink(
            "lorawan",
            Downlink::new(ABP_EUI, "0", Verb::Set, Value::Bytes(vec![1])),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    runtime.shutdown().await;
}
