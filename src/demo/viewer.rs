//! The viewer: an MQTT subscriber on the embedded broker standing in for
//! the cloud. It reads the gateway's batches, status and health and puts
//! each on the screen as it arrives.

use super::broker::MAX_PAYLOAD;
use super::screen::{self, Batch, Kind, Sampler, ViewerTotals};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long the viewer may take to connect and subscribe.
const SUBSCRIBE_DEADLINE: Duration = Duration::from_secs(5);
/// One device reading in this many is shown; the rest are counted.
pub const READINGS_SHOWN_EVERY: u64 = 5;

/// A running viewer.
pub struct Viewer {
    client: AsyncClient,
    task: JoinHandle<()>,
    totals: Arc<Mutex<ViewerTotals>>,
    /// Turns `true` when the gateway says `offline`.
    offline: watch::Receiver<bool>,
}

/// Why the viewer could not subscribe.
#[derive(Debug, thiserror::Error)]
pub enum ViewerError {
    /// The connection or the subscription failed.
    #[error("the viewer cannot subscribe on the embedded broker: {0}")]
    Subscribe(String),
    /// No SUBACK in time.
    #[error("the viewer got no SUBACK within {SUBSCRIBE_DEADLINE:?}")]
    Timeout,
}

impl Viewer {
    /// Connects to the broker on `port`, subscribes to every gateway's
    /// telemetry, status and health under `topic_root`, and waits for the
    /// SUBACK, so nothing the gateway publishes afterwards is missed.
    pub async fn start(port: u16, topic_root: &str) -> Result<Viewer, ViewerError> {
        let mut options = MqttOptions::new("sluice-demo-viewer", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(MAX_PAYLOAD + 4096, 16 << 10);
        let (client, mut events) = AsyncClient::new(options, 16);
        let filters: Vec<SubscribeFilter> = ["telemetry", "status", "health"]
            .iter()
            .map(|t| SubscribeFilter::new(format!("{topic_root}/+/{t}"), QoS::AtLeastOnce))
            .collect();
        client
            .subscribe_many(filters.clone())
            .await
            .map_err(|e| ViewerError::Subscribe(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + SUBSCRIBE_DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, events.poll()).await {
                Err(_) => return Err(ViewerError::Timeout),
                Ok(Err(e)) => return Err(ViewerError::Subscribe(e.to_string())),
                Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                    if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                        return Err(ViewerError::Subscribe("the broker refused a filter".into()));
                    }
                    break;
                }
                Ok(Ok(_)) => {}
            }
        }
        let totals = Arc::new(Mutex::new(ViewerTotals::default()));
        let (said_offline, offline) = watch::channel(false);
        let task = tokio::spawn(watch_broker(
            events,
            client.clone(),
            filters,
            totals.clone(),
            said_offline,
        ));
        Ok(Viewer {
            client,
            task,
            totals,
            offline,
        })
    }

    /// Waits up to `grace` for the gateway's `offline` status (it comes
    /// after its last batches), then disconnects; what the viewer saw.
    pub async fn finish(mut self, grace: Duration) -> ViewerTotals {
        let _ = tokio::time::timeout(grace, self.offline.wait_for(|o| *o)).await;
        let _ = self.client.try_disconnect();
        self.task.abort();
        let _ = self.task.await;
        self.totals.lock().map(|t| *t).unwrap_or_default()
    }
}

/// The viewer's event loop: polls rumqttc (which reconnects by itself) and
/// subscribes again after a reconnect, the session being clean.
async fn watch_broker(
    mut events: EventLoop,
    client: AsyncClient,
    filters: Vec<SubscribeFilter>,
    totals: Arc<Mutex<ViewerTotals>>,
    said_offline: watch::Sender<bool>,
) {
    let mut sampler = Sampler::new(READINGS_SHOWN_EVERY);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let offline = show_publish(&p, &mut sampler, &totals);
                if offline {
                    let _ = said_offline.send(true);
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.try_subscribe_many(filters.clone());
            }
            Ok(_) => {}
            Err(e) => {
                screen::show("viewer", format!("connection to the broker lost: {e}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Shows one message; `true` if it was the gateway's `offline` status.
fn show_publish(p: &Publish, sampler: &mut Sampler, totals: &Mutex<ViewerTotals>) -> bool {
    let Ok(mut t) = totals.lock() else {
        return false;
    };
    let topic = p.topic.as_str();
    if topic.ends_with("/telemetry") {
        let Ok(batch) = serde_json::from_slice::<Batch>(&p.payload) else {
            t.undecodable += 1;
            screen::show("viewer", format!("{topic}: a batch that is not valid JSON"));
            return false;
        };
        t.batches += 1;
        for r in &batch.records {
            t.records += 1;
            match r.kind() {
                Kind::Reading => t.readings += 1,
                Kind::Scaled => t.scaled += 1,
                Kind::Alert => t.alerts += 1,
                Kind::Window => t.windows += 1,
                Kind::Decoded => t.decoded += 1,
                Kind::Ble => t.ble += 1,
                Kind::Frame | Kind::Other => {}
            }
        }
        drop(t);
        for (kind, line) in screen::batch_lines(&batch, sampler) {
            screen::show(kind, line);
        }
        return false;
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
        t.undecodable += 1;
        return false;
    };
    if topic.ends_with("/status") {
        t.statuses += 1;
        screen::show("status", screen::status_text(&body));
        body["state"] == "offline"
    } else {
        t.healths += 1;
        screen::show("health", screen::health_text(&body));
        false
    }
}
