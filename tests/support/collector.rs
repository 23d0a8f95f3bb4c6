//! A subscriber standing in for the cloud: collects every upstream record
//! published under the test gateway's telemetry topic.

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Between the subscriber's reconnect attempts while the broker is down.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// What the cloud received so far.
#[derive(Default, Debug)]
pub struct Received {
    /// Copies received per record id (more than 1 means duplicates).
    pub copies: HashMap<String, u32>,
    /// (device, reading `n`) in arrival order, first copies only.
    pub arrivals: Vec<(String, u64)>,
    /// Batch payloads received.
    pub batches: u64,
    /// Every record as JSON, first copies only.
    pub records: Vec<serde_json::Value>,
    /// Last retained/non-retained status payload.
    pub status: Option<serde_json::Value>,
    /// Last health message.
    pub health: Option<serde_json::Value>,
}

impl Received {
    /// Distinct records received.
    pub fn unique(&self) -> usize {
        self.copies.len()
    }

    /// The reading numbers received from `device`, sorted.
    pub fn readings_of(&self, device: &str) -> Vec<u64> {
        let mut n: Vec<u64> = self
            .arrivals
            .iter()
            .filter(|(d, _)| d == device)
            .map(|(_, n)| *n)
            .collect();
        n.sort_unstable();
        n
    }

    /// Extra copies received.
    pub fn duplicates(&self) -> u64 {
        self.copies.values().map(|&c| u64::from(c - 1)).sum()
    }
}

/// A persistent-session QoS 1 subscriber running in the background.
pub struct Collector {
    pub received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Subscribes to `sluice/+/telemetry` and `sluice/+/status` on `port`
    /// with a persistent session; returns once the subscription is acknowledged.
    pub async fn start(port: u16) -> Collector {
        let received = Arc::new(Mutex::new(Received::default()));
        let mut opts = MqttOptions::new(format!("collector-{port}"), "127.0.0.1", port);
        opts.set_clean_session(false);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(64 << 20, 64 << 10);
        let (client, mut eventloop) = AsyncClient::new(opts, 10);
        client
            .subscribe("sluice/+/telemetry", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        client
            .subscribe("sluice/+/status", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        client
            .subscribe("sluice/+/health", QoS::AtMostOnce)
            .await
            .expect("subscribe");
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let sink = received.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            let mut ready = Some(ready_tx);
            let mut subacks = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subacks += 1;
                        if subacks == 3
                            && let Some(tx) = ready.take()
                        {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let value: serde_json::Value = match serde_json::from_slice(&p.payload) {
                            Ok(v) => v,
                            Err(e) => panic!("gateway published invalid JSON on {}: {e}", p.topic),
                        };
                        let mut r = sink.lock().expect("lock");
                        if p.topic.ends_with("/status") {
                            r.status = Some(value);
                            continue;
                        }
                        if p.topic.ends_with("/health") {
                            r.health = Some(value);
                            continue;
                        }
                        r.batches += 1;
                        for record in value["records"].as_array().cloned().unwrap_or_default() {
                            let id = record["id"].as_str().unwrap_or_default().to_owned();
                            let copies = r.copies.entry(id).or_insert(0);
                            *copies += 1;
                            if *copies == 1 {
                                let device =
                                    record["device"].as_str().unwrap_or_default().to_owned();
                                let n =
                                    record["readings"][0]["value"].as_f64().unwrap_or(-1.0) as u64;
                                r.arrivals.push((device, n));
                                r.records.push(record);
                            }
                        }
                    }
                    Ok(_) => {}
                    // The broker is down (outage tests): pace the reconnects
                    // instead of spinning. Nothing waits on this loop.
                    Err(_) => tokio::time::sleep(RECONNECT_PAUSE).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("collector subscribed within 10 s")
            .expect("collector task alive");
        Collector { received, task }
    }

    /// Distinct records so far.
    pub fn unique(&self) -> usize {
        self.received.lock().expect("lock").unique()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
