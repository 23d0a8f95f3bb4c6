//! LoRaWAN costs:
//!
//! 1. Uplinks per second on one core (this thread, no I/O): GWMP PUSH_DATA
//!    parsed (JSON, base64), the frame checked (FCnt rebuilt, MIC with the
//!    NwkSKey), decrypted with the AppSKey and turned into the uplink event
//!    and its session state change, by the adapter's own `gwmp` and
//!    `Network`; against the bare `lorawan` crate's parse + MIC + decrypt of
//!    the same frames (the baseline), in the same run.
//! 2. JoinRequest → PULL_RESP latency through the real gateway (`sluice run`
//!    in a process of its own, the session and DevNonce committed to SQLite
//!    before the answer): this process is the concentrator, one join at a
//!    time over loopback UDP.
//!
//! `CARGO_TARGET_DIR=/tmp/sluice-bench cargo bench --bench lorawan`
//! (`SLUICE_BENCH_FRAMES`, default 200000; `SLUICE_BENCH_JOINS`, default 2000)

use lorawan::creator::{DataPayloadCreator, JoinRequestCreator};
use lorawan::keys::{AES128, AppKey, AppSKey, NewSKey};
use lorawan::parser::{DataPayload, PhyPayload, parse};
use sluice_lorawan::LorawanConfig;
use sluice_lorawan::gwmp::{self, Upstream};
use sluice_lorawan::network::{Network, Reception};
use sluice_lorawan::region::Modulation;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NWK_SKEY: [u8; 16] = [0x01; 16];
const APP_SKEY: [u8; 16] = [0x02; 16];
const DEV_ADDR: u32 = 0x2601_1b01;
const APP_KEY: [u8; 16] = [0x2b; 16];
/// A typical sensor payload: 11 bytes of Cayenne LPP.
const PAYLOAD: [u8; 11] = [1, 0x67, 0, 0xf5, 2, 0x68, 0x5a, 3, 0x73, 0x27, 0x7f];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let frames = env("SLUICE_BENCH_FRAMES", 200_000) as u32;
    let joins = env("SLUICE_BENCH_JOINS", 2_000) as u16;
    println!("# LoRaWAN benchmark\n");
    throughput(frames);
    join_latency(joins);
}

/// The ABP uplink with counter `fcnt`.
fn uplink(fcnt: u32) -> Vec<u8> {
    let mut c = DataPayloadCreator::new();
    c.set_uplink(true)
        .set_confirmed(false)
        .set_dev_addr(&DEV_ADDR.to_le_bytes())
        .set_fcnt(fcnt)
        .set_f_port(1);
    c.build(
        &PAYLOAD,
        &[],
        &NewSKey::from(NWK_SKEY),
        &AppSKey::from(APP_SKEY),
    )
    .expect("frame")
    .to_vec()
}

fn throughput(frames: u32) {
    let phys: Vec<Vec<u8>> = (1..=frames).map(uplink).collect();
    let datagrams: Vec<Vec<u8>> = phys
        .iter()
        .enumerate()
        .map(|(i, phy)| {
            let json = gwmp::rxpk_json(phy, i as u32 * 1000, 868.1, "SF7BW125", -70, 7.5);
            gwmp::push_data([0, 1], [0xaa; 8], &json)
        })
        .collect();

    // Baseline: the lorawan crate alone.
    let nwk = AES128(NWK_SKEY);
    let app = AES128(APP_SKEY);
    let start = Instant::now();
    let mut bytes = 0usize;
    for (i, phy) in phys.iter().enumerate() {
        let Ok(PhyPayload::Data(DataPayload::Encrypted(enc))) = parse(phy.clone()) else {
            panic!("parse");
        };
        let fcnt = i as u32 + 1;
        assert!(enc.validate_mic(&nwk, fcnt));
        let dec = enc.decrypt(Some(&nwk), Some(&app), fcnt).expect("decrypt");
        if let lorawan::parser::FRMPayload::Data(d) = dec.frm_payload() {
            bytes += d.len();
        }
    }
    let bare = start.elapsed();
    assert_eq!(bytes, PAYLOAD.len() * phys.len());

    // The adapter: GWMP + FCnt + MIC + decrypt + event and state change.
    let config: LorawanConfig = toml::from_str(&format!(
        "[[devices]]\ndev_eui = \"00000000000000ab\"\nactivation = \"abp\"\ndev_addr = \"{DEV_ADDR:08x}\"\nnwk_skey = \"{}\"\napp_skey = \"{}\"\n",
        sluice_lorawan::keys::to_hex(&NWK_SKEY),
        sluice_lorawan::keys::to_hex(&APP_SKEY)
    ))
    .expect("config");
    let mut network = Network::new(&config, Vec::new());
    let region = network.region();
    let start = Instant::now();
    let mut events = 0usize;
    for d in &datagrams {
        let Ok(Upstream::PushData { gateway, push, .. }) = gwmp::parse(d) else {
            panic!("GWMP");
        };
        for rx in &push.rxpk {
            let phy = rx.payload().expect("base64");
            let modulation = rx
                .datr_str()
                .and_then(Modulation::parse)
                .expect("data rate");
            let reception = Reception {
                gateway: sluice_lorawan::keys::Eui64(gateway),
                tmst: rx.tmst,
                freq_hz: rx.freq_hz(),
                modulation,
                dr: region.uplink_dr(modulation).expect("dr"),
                rssi: rx.rssi,
                snr: rx.lsnr.unwrap_or(0.0),
            };
            let outcome = network
                .uplink(&phy, &[reception], None, 1_764_000_000_000)
                .expect("accepted");
            events += outcome.events.len();
        }
    }
    let adapter = start.elapsed();
    assert_eq!(events, datagrams.len());

    let rate = |d: Duration| phys.len() as f64 / d.as_secs_f64();
    println!(
        "## Uplinks per second, one core ({} ABP uplinks, {}-byte FRMPayload, PUSH_DATA of {} bytes)\n",
        phys.len(),
        PAYLOAD.len(),
        datagrams[0].len()
    );
    println!("| path | uplinks/s | µs per uplink |\n|---|---:|---:|");
    for (name, d) in [
        (
            "bare `lorawan` crate: parse + MIC + decrypt (baseline)",
            bare,
        ),
        (
            "adapter: GWMP parse + FCnt + MIC + decrypt + event and state",
            adapter,
        ),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} |",
            rate(d),
            d.as_secs_f64() * 1e6 / phys.len() as f64
        );
    }
    println!();
}

fn join_latency(joins: u16) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"bench\"\ndata_dir = \"{}\"\n[uplink]\nurl = \"mqtt://127.0.0.1:{closed}\"\n\n\
             [lorawan]\nlisten = \"127.0.0.1:{port}\"\n\n[[lorawan.devices]]\n\
             dev_eui = \"0011223344556677\"\nactivation = \"otaa\"\njoin_eui = \"70b3d57ed0000000\"\napp_key = \"{}\"\n",
            dir.path().display(),
            sluice_lorawan::keys::to_hex(&APP_KEY)
        ),
    )
    .expect("config");
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--config"])
        .arg(&config)
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sluice");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(("127.0.0.1", port)).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = vec![0u8; 65_536];
    // PULL_DATA until PULL_ACK: the gateway is up and knows the downlink path.
    let up = Instant::now();
    loop {
        assert!(up.elapsed() < Duration::from_secs(30), "gateway up");
        socket
            .send(&gwmp::pull_data([0, 1], [0xaa; 8]))
            .expect("send");
        if matches!(socket.recv(&mut buf), Ok(n) if n == 4 && buf[3] == gwmp::ident::PULL_ACK) {
            break;
        }
    }
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut latencies = Vec::with_capacity(usize::from(joins));
    let mut lost = 0;
    for nonce in 0..joins {
        let mut c = JoinRequestCreator::new();
        let mut join_eui = [0x70, 0xb3, 0xd5, 0x7e, 0xd0, 0, 0, 0];
        join_eui.reverse();
        let mut dev_eui = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
        dev_eui.reverse();
        c.set_app_eui(&join_eui)
            .set_dev_eui(&dev_eui)
            .set_dev_nonce(&nonce.to_le_bytes());
        let phy = c.build(&AppKey::from(APP_KEY)).to_vec();
        let json = gwmp::rxpk_json(&phy, u32::from(nonce) * 1000, 868.1, "SF7BW125", -60, 8.0);
        let datagram = gwmp::push_data(nonce.to_be_bytes(), [0xaa; 8], &json);
        let sent = Instant::now();
        socket.send(&datagram).expect("send");
        // Bounded: a PUSH_ACK, then the PULL_RESP, within the timeout.
        let mut got = None;
        for _ in 0..4 {
            match socket.recv(&mut buf) {
                Ok(n) if n > 4 && buf[3] == gwmp::ident::PULL_RESP => {
                    got = Some(sent.elapsed());
                    let mut ack = vec![2, buf[1], buf[2], gwmp::ident::TX_ACK];
                    ack.extend_from_slice(&[0xaa; 8]);
                    let _ = socket.send(&ack);
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        match got {
            Some(d) => latencies.push(d),
            None => lost += 1,
        }
    }
    let _ = gateway.kill();
    let _ = gateway.wait();
    latencies.sort();
    let q = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "## JoinRequest → PULL_RESP through `sluice run` ({} joins one after another, the default `dedup_window` (one concentrator live: it closes at once), session and DevNonce committed before the answer)\n",
        joins
    );
    println!(
        "| answered | lost | p50 ms | p90 ms | p99 ms | max ms |\n|---:|---:|---:|---:|---:|---:|"
    );
    println!(
        "| {} | {lost} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
        latencies.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    );
}
