//! The server restarted over the same sink (as the gateway restarts over the
//! same queue): a retransmission of a request answered before the restart
//! gets the original answer and no new event, unless `durable_exchanges` is off.

use sluice_adapter_common::testing::{CollectingSink, context};
use sluice_adapter_common::{Adapter, Counters};
use sluice_coap::CoapConfig;
use sluice_coap::client::{JSON, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

/// A running server: its address, how to stop it, and its run.
struct Running {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    run: tokio::task::JoinHandle<Result<(), sluice_adapter_common::RunError>>,
    counters: Arc<Counters>,
}

async fn start(config: &CoapConfig, sink: &CollectingSink) -> Running {
    let opened = config.open().await.expect("opens");
    let addr = match opened.holds().first() {
        Some(sluice_adapter_common::Resource::Udp(a)) => *a,
        other => panic!("holds no UDP socket: {other:?}"),
    };
    let (context, controls) = context(sink.clone());
    let run = tokio::spawn(opened.run(context));
    Running {
        addr,
        stop: controls.stop,
        run,
        counters: controls.counters,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.run.await.expect("joins").expect("stops cleanly");
    }
}

/// Sends `request` until an answer comes (at most 5 tries, 1 s apart).
async fn exchange(device: &UdpSocket, server: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 1500];
    for _ in 0..5 {
        device.send_to(request, server).await.expect("send");
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(1), device.recv_from(&mut buf)).await
        {
            return buf[..n].to_vec();
        }
    }
    panic!("no answer from {server}");
}

fn config(durable: bool) -> CoapConfig {
    CoapConfig {
        listen: vec!["127.0.0.1:0".parse().expect("address")],
        durable_exchanges: durable,
        ..CoapConfig::default()
    }
}

/// CON POST with message id 0x1234 and token `07 08 09`.
fn post() -> Vec<u8> {
    Request::new(coap_lite::RequestType::Post, ["r", "d1"])
        .with_payload(JSON, br#"{"n": 1}"#.to_vec())
        .encode(0x1234, &[7, 8, 9])
        .expect("encode")
}

/// The piggybacked `2.04` for that request: ACK, token length 3, 2.04,
/// message id 0x1234, the token; no options, no payload.
const CHANGED: [u8; 7] = [0x63, 0x44, 0x12, 0x34, 7, 8, 9];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmission_after_a_restart_gets_the_original_answer_and_no_new_event() {
    let sink = CollectingSink::new();
    let device = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let config = config(true);

    let server = start(&config, &sink).await;
    assert_eq!(exchange(&device, server.addr, &post()).await, CHANGED);
    assert_eq!(sink.len(), 1);
    server.stop().await;
    let remembered = sink.exchanges();
    assert_eq!(remembered.len(), 1);
    assert_eq!(remembered[0].exchange.answer, CHANGED);
    assert_eq!(remembered[0].events, [sink.events()[0].id]);

    // The same device (same address and port) retransmits to the restarted server.
    let server = start(&config, &sink).await;
    assert_eq!(exchange(&device, server.addr, &post()).await, CHANGED);
    assert_eq!(sink.len(), 1, "no new event");
    assert_eq!(
        server
            .counters
            .snapshot()
            .rejected
            .get("exchange/duplicate"),
        Some(&1),
        "counted as a duplicate"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_durable_exchanges_a_restart_forgets_the_answer() {
    let sink = CollectingSink::new();
    let device = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let config = config(false);
    for _ in 0..2 {
        let server = start(&config, &sink).await;
        assert_eq!(exchange(&device, server.addr, &post()).await, CHANGED);
        server.stop().await;
    }
    assert!(sink.exchanges().is_empty());
    assert_eq!(sink.len(), 2, "ingested again after the restart");
}
