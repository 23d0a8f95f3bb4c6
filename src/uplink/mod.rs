//! The MQTT uplink: drains the queue in batches, publishes them with QoS 1
//! and deletes records only when their batch is acknowledged.
//!
//! One task owns the rumqttc event loop, the [`BatchTracker`] and the queue
//! reader, so the moment a connection fails is known exactly: nothing is
//! handed to the client between a connection error and the next CONNACK, and
//! on that CONNACK (never a resumed session) everything unacknowledged is
//! sent again from the queue. Delivery is at-least-once; record ids let the
//! cloud drop duplicates.

mod backoff;
mod batching;
pub mod health;
pub mod operator;
mod options;
mod tracker;

pub use backoff::Backoff;
pub use batching::{Batching, Dispatch, Due};
pub use options::{
    Birth, Topics, all_replies_filter, fleet_cmd_topic, mqtt_options, status_payload,
    status_payload_with,
};
pub use tracker::{BatchTracker, Sent};

use crate::clock::now_ms;
use crate::config::Config;
use crate::control::{ControlLink, Inbound, Outbound};
use crate::heartbeat::Heartbeat;
use crate::metrics::Metrics;
use crate::queue::{QueueReader, QueuedRecord, Upkeep};
use crate::record::{BatchWriter, UpstreamRecord};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Outgoing, Packet, QoS};
use sluice_event::EventView;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot, watch};

/// How long shutdown waits for acknowledgements of batches in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Longest reconnect delay after the broker refused the connection (bad
/// credentials, not authorized, client id or protocol refused), if
/// `reconnect_max` is shorter: the broker is up, so this is no outage to get
/// through quickly, and a fleet of misconfigured gateways must not hammer it.
const REFUSED_RECONNECT_MAX: Duration = Duration::from_secs(60);

/// Everything the uplink task needs.
pub struct Uplink {
    config: Config,
    topics: Topics,
    metrics: Arc<Metrics>,
    reader: Option<QueueReader>,
    upkeep: Upkeep,
    added: Arc<Notify>,
    tracker: BatchTracker,
    connected: bool,
    /// Records may be due: fetch before waiting.
    due: bool,
    /// A partial batch forming behind batches in flight goes out by then.
    linger_until: Option<Instant>,
    /// The newest deletion sent to the writer; later reads wait for it.
    last_delete: Option<oneshot::Receiver<u64>>,
    batches: u64,
    /// Beats every time round the loop, and at least every [`BEAT`].
    heartbeat: Heartbeat,
    /// Commands in, replies out, if control is on.
    control: Option<ControlLink>,
    /// Rate and acknowledgement latency since the last health message.
    window: health::Window,
}

/// The uplink beats at least this often while it is not stuck.
const BEAT: Duration = Duration::from_secs(1);

impl Uplink {
    /// An uplink for `config`, draining through `reader` and deleting through `upkeep`.
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        reader: QueueReader,
        upkeep: Upkeep,
        added: Arc<Notify>,
        heartbeat: Heartbeat,
    ) -> Uplink {
        Uplink {
            topics: Topics::new(&config),
            config,
            metrics,
            reader: Some(reader),
            upkeep,
            added,
            tracker: BatchTracker::default(),
            connected: false,
            due: true,
            linger_until: None,
            last_delete: None,
            batches: 0,
            heartbeat,
            control: None,
            window: health::Window::default(),
        }
    }

    /// Also carries control: subscribes to the command topics on every
    /// connection, hands commands to `link` and publishes its replies.
    pub fn with_control(mut self, link: Option<ControlLink>) -> Uplink {
        self.control = link;
        self
    }

    /// Runs until `shutdown` turns true, then waits briefly for batches in
    /// flight, publishes the `offline` status and disconnects.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let options = match mqtt_options(&self.config, &self.topics) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "Uplink cannot start; records stay queued");
                let _ = shutdown.wait_for(|s| *s).await;
                return;
            }
        };
        let url = self.config.uplink.url.to_string();
        let (client, mut eventloop) =
            AsyncClient::new(options, self.config.uplink.max_inflight as usize + 8);
        no_delay(&mut eventloop);
        let u = &self.config.uplink;
        let mut backoff = Reconnect {
            outage: Backoff::new(u.reconnect_min.get(), u.reconnect_max.get()),
            refused: Backoff::new(
                u.reconnect_min.get(),
                u.reconnect_max.get().max(REFUSED_RECONNECT_MAX),
            ),
        };
        let mut health = tokio::time::interval(u.health_interval.get());
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_inflight = u.max_inflight as usize;
        tracing::info!(broker = %url, topic = %self.topics.telemetry, "Uplink starting");

        let mut beat = tokio::time::interval(BEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The reply queue outlives this uplink; the previous one let go of it when it stopped.
        let mut outbound = match &self.control {
            Some(link) => Some(link.outbound.clone().lock_owned().await),
            None => None,
        };
        while !*shutdown.borrow() {
            self.heartbeat.beat();
            if self.connected {
                self.pump(&client).await;
            }
            let room = self.connected && self.tracker.batches_in_flight() < max_inflight;
            let linger = self.linger_until.map(tokio::time::Instant::from_std);
            tokio::select! {
                changed = shutdown.changed() => {
                    // The runtime is gone without saying so: stop as on shutdown.
                    if changed.is_err() {
                        break;
                    }
                }
                event = eventloop.poll() => match event {
                    Ok(event) => {
                        if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                            backoff.reset();
                        }
                        self.handle(event, &client, &url).await;
                    }
                    Err(error) => {
                        self.connection_failed(&error, &url, &mut backoff, &mut shutdown).await;
                    }
                },
                _ = self.added.notified(), if room => self.due = true,
                _ = sleep_until_opt(linger), if room && linger.is_some() => {
                    self.linger_until = None;
                    self.due = true;
                }
                _ = health.tick(), if self.connected => self.publish_health(&client).await,
                out = recv_outbound(&mut outbound), if self.connected => match out {
                    Some(Outbound::Reply(bytes)) => self.publish_reply(&client, bytes),
                    Some(Outbound::Status) => self.publish_birth(&client),
                    None => outbound = None,
                },
                _ = beat.tick() => {}
            }
        }
        self.close(&client, &mut eventloop).await;
    }

    /// Reacts to one event of the MQTT connection.
    async fn handle(&mut self, event: Event, client: &AsyncClient, url: &str) {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                self.connected = true;
                Metrics::add(&self.metrics.uplink_connects, 1);
                // A clean session: the broker and rumqttc both forgot whatever was unacknowledged.
                let lost = self.tracker.connection_reset();
                if lost > 0 {
                    Metrics::add(&self.metrics.uplink_batches_resent, lost as u64);
                    tracing::info!(
                        batches = lost,
                        "Resending batches the previous connection did not confirm"
                    );
                }
                self.rewind().await;
                tracing::info!(broker = %url, session_present = ack.session_present, "Connected to MQTT broker");
                // No session is ever assumed (a cluster may connect us to a node
                // that knows nothing of us): subscribe on every connection.
                if self.control.is_some() {
                    for topic in [&self.topics.cmd, &self.topics.fleet_cmd] {
                        if let Err(e) = client.try_subscribe(topic.as_str(), QoS::AtLeastOnce) {
                            tracing::warn!(topic = %topic, error = %e, "Cannot subscribe to commands");
                        }
                    }
                }
                self.publish_birth(client);
            }
            Event::Incoming(Packet::Publish(p)) => self.command(p.topic, p.payload.to_vec()),
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                self.tracker.outgoing_publish(pkid);
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some((Sent::Batch { seqs }, after)) = self.tracker.puback(ack.pkid) {
                    self.window.acked(after);
                    let records = seqs.len() as u64;
                    tracing::debug!(
                        pkid = ack.pkid,
                        records,
                        first_seq = seqs.first(),
                        "Batch acknowledged"
                    );
                    self.last_delete = Some(self.upkeep.delete(seqs).await);
                    Metrics::add(&self.metrics.uplink_batches_acked, 1);
                    Metrics::add(&self.metrics.uplink_records_acked, records);
                    self.due = true;
                }
            }
            _ => {}
        }
    }

    /// Logs a failed connection and waits out the back-off (or shutdown).
    async fn connection_failed(
        &mut self,
        error: &ConnectionError,
        url: &str,
        backoff: &mut Reconnect,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let was_connected = std::mem::replace(&mut self.connected, false);
        Metrics::add(&self.metrics.uplink_connection_errors, 1);
        // The back-off was reset on the last CONNACK, so a lost connection is retried quickly.
        let retry_in = backoff.next_delay(error);
        if was_connected {
            tracing::warn!(broker = %url, error = %error, in_flight = self.tracker.batches_in_flight(),
                "MQTT connection lost; records stay queued");
        } else {
            tracing::warn!(broker = %url, error = %error, retry_in_ms = retry_in.as_millis() as u64,
                "MQTT connection failed; retrying");
        }
        // Waiting to reconnect is not being stuck: keep beating.
        let until = tokio::time::Instant::now() + retry_in;
        while tokio::time::Instant::now() < until {
            self.heartbeat.beat();
            tokio::select! {
                _ = tokio::time::sleep_until(until.min(tokio::time::Instant::now() + BEAT)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Publishes due batches as [`Batching`] decides: at once when nothing
    /// is in flight, otherwise when full, when the window empties or when the
    /// oldest record has waited `linger`; never beyond `max_inflight`.
    async fn pump(&mut self, client: &AsyncClient) {
        let u = &self.config.uplink;
        let (max_records, max_bytes) = (u.batch_max_records, u.batch_max_bytes.bytes() as usize);
        let rule = Batching {
            max_inflight: u.max_inflight as usize,
            linger_ms: i64::try_from(u.linger.get().as_millis()).unwrap_or(i64::MAX),
        };
        while self.due && self.tracker.batches_in_flight() < rule.max_inflight {
            let Some(rows) = self.fetch(max_records).await else {
                self.due = false;
                return;
            };
            let stored: usize = rows.iter().map(|r| r.event.len()).sum();
            let due = match rows.iter().map(|r| r.enqueued_ms).min() {
                None => Due::Nothing,
                Some(_) if rows.len() >= max_records || stored * 2 >= max_bytes => Due::Full,
                Some(oldest_ms) => Due::Partial { oldest_ms },
            };
            let now = now_ms();
            match rule.decide(due, self.tracker.batches_in_flight(), now) {
                Dispatch::Publish => {}
                Dispatch::Idle | Dispatch::WindowFull => {
                    // An acknowledgement or a commit makes records due again.
                    self.due = false;
                    return;
                }
                Dispatch::Wait { until_ms } => {
                    let wait = Duration::from_millis(until_ms.saturating_sub(now).max(0) as u64);
                    self.linger_until = Some(Instant::now() + wait);
                    self.due = false;
                    return;
                }
            }
            self.linger_until = None;
            let (payload, handed) = self.build_batch(&rows, max_bytes);
            let seqs: Vec<i64> = handed
                .iter()
                .filter(|(_, ok)| *ok)
                .map(|(r, _)| r.seq)
                .collect();
            let consumed: Vec<QueuedRecord> = handed.into_iter().map(|(r, _)| r.clone()).collect();
            if seqs.is_empty() {
                self.advance(&consumed);
                continue;
            }
            self.tracker.queued(Sent::Batch { seqs });
            match client.try_publish(&self.topics.telemetry, QoS::AtLeastOnce, false, payload) {
                Ok(()) => {
                    self.advance(&consumed);
                    self.batches += 1;
                    Metrics::add(&self.metrics.uplink_batches_sent, 1);
                }
                Err(e) => {
                    self.tracker.unqueue_last();
                    tracing::warn!(error = %e, "MQTT client refused a batch; it stays queued");
                    return;
                }
            }
        }
    }

    /// Encodes rows into one payload within `max_bytes`; returns it and the
    /// rows it consumed, each marked whether it is in the payload (rows that
    /// cannot be decoded are consumed but not sent).
    fn build_batch<'r>(
        &self,
        rows: &'r [QueuedRecord],
        max_bytes: usize,
    ) -> (Vec<u8>, Vec<(&'r QueuedRecord, bool)>) {
        let gateway = self.config.gateway.id.as_str();
        let mut batch = BatchWriter::new(gateway, now_ms(), max_bytes);
        let mut handed = Vec::with_capacity(rows.len());
        for row in rows {
            let event = match EventView::parse(&row.event) {
                Ok(e) => e,
                Err(error) => {
                    Metrics::add(&self.metrics.uplink_undecodable, 1);
                    tracing::error!(seq = row.seq, error = %error, "Queued record cannot be decoded; skipped, left in the queue");
                    handed.push((row, false));
                    continue;
                }
            };
            if !batch.push(&UpstreamRecord {
                event: &event,
                stream: &row.stream,
                queued_ms: row.enqueued_ms,
            }) {
                break;
            }
            tracing::debug!(event_id = %event.id, batch = self.batches + 1, "Record published");
            handed.push((row, true));
        }
        (batch.finish(), handed)
    }

    /// Reads due records on a blocking thread.
    async fn fetch(&mut self, max: usize) -> Option<Vec<QueuedRecord>> {
        let mut reader = self.reader.take()?;
        let (reader, rows) = tokio::task::spawn_blocking(move || {
            let rows = reader.fetch(max, now_ms());
            (reader, rows)
        })
        .await
        .ok()?;
        self.reader = Some(reader);
        match rows {
            Ok(rows) => Some(rows),
            Err(error) => {
                tracing::error!(error = %error, "Cannot read the queue");
                None
            }
        }
    }

    fn advance(&mut self, rows: &[QueuedRecord]) {
        if let Some(reader) = self.reader.as_mut() {
            reader.advance(rows);
        }
    }

    /// Makes every unacknowledged record due again, once acknowledged ones are deleted.
    async fn rewind(&mut self) {
        if let Some(pending) = self.last_delete.take() {
            let _ = pending.await;
        }
        if let Some(reader) = self.reader.as_mut() {
            reader.rewind();
        }
        self.linger_until = None;
        self.due = true;
    }

    /// Hands a message from a command topic to control; drops it, counted,
    /// if control is busy (the operator's tool times out and may retry).
    fn command(&mut self, topic: String, payload: Vec<u8>) {
        let Some(link) = &self.control else { return };
        if topic != self.topics.cmd && topic != self.topics.fleet_cmd {
            return;
        }
        if let Err(e) = link.inbound.try_send(Inbound::Mqtt { topic, payload }) {
            Metrics::add(&self.metrics.control_dropped, 1);
            tracing::warn!(error = %e, "Command dropped: control is busy");
        }
    }

    /// Publishes a signed reply (QoS 1).
    fn publish_reply(&mut self, client: &AsyncClient, bytes: Vec<u8>) {
        self.tracker.queued(Sent::Reply);
        if let Err(e) = client.try_publish(&self.topics.reply, QoS::AtLeastOnce, false, bytes) {
            self.tracker.unqueue_last();
            tracing::warn!(error = %e, "Cannot publish a reply");
        }
    }

    /// Publishes the retained `online` status with config hash, uptime and adapters.
    fn publish_birth(&mut self, client: &AsyncClient) {
        let adapters = self
            .metrics
            .snapshot()
            .adapters
            .keys()
            .map(|name| (name.to_string(), "running".to_string()))
            .collect();
        let birth = Birth {
            config_hash: self.metrics.config_hash(),
            uptime_s: self.metrics.uptime_s(),
            adapters,
        };
        let payload = status_payload_with(
            self.config.gateway.id.as_str(),
            "online",
            None,
            Some(now_ms()),
            Some(&birth),
        );
        self.tracker.queued(Sent::Status);
        if let Err(e) = client.try_publish(&self.topics.status, QoS::AtLeastOnce, true, payload) {
            self.tracker.unqueue_last();
            tracing::warn!(error = %e, "Cannot publish online status");
        }
    }

    async fn publish_health(&mut self, client: &AsyncClient) {
        let body = health::message(
            self.config.gateway.id.as_str(),
            &self.metrics,
            &self.config.queue_path(),
            &mut self.window,
        )
        .await;
        // QoS 0: a missed health message is replaced by the next one.
        let _ = client.try_publish(
            &self.topics.health,
            QoS::AtMostOnce,
            false,
            body.to_string(),
        );
    }

    /// Waits for acknowledgements in flight, says `offline`, disconnects.
    async fn close(&mut self, client: &AsyncClient, eventloop: &mut EventLoop) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let url = self.config.uplink.url.to_string();
        while self.connected && !self.tracker.is_idle() {
            tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(event) => self.handle(event, client, &url).await,
                    Err(_) => self.connected = false,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if self.connected {
            let offline = status_payload(
                self.config.gateway.id.as_str(),
                "offline",
                Some("shutdown"),
                Some(now_ms()),
            );
            let _ = client.try_publish(&self.topics.status, QoS::AtLeastOnce, true, offline);
            let _ = client.try_disconnect();
            loop {
                tokio::select! {
                    event = eventloop.poll() => match event {
                        Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => {}
                    },
                    _ = tokio::time::sleep_until(deadline + Duration::from_secs(1)) => break,
                }
            }
        }
        if let Some(pending) = self.last_delete.take() {
            let _ = pending.await;
        }
        let unconfirmed = self.tracker.batches_in_flight();
        tracing::info!(
            unconfirmed_batches = unconfirmed,
            "Uplink stopped; unconfirmed records stay queued"
        );
    }
}

/// The two reconnect back-offs: a broker that cannot be reached is retried
/// at least every `reconnect_max`, one that refuses the connection less often.
struct Reconnect {
    outage: Backoff,
    refused: Backoff,
}

impl Reconnect {
    /// The delay before retrying after `error`.
    fn next_delay(&mut self, error: &ConnectionError) -> Duration {
        if refused_by_broker(error) {
            self.refused.next_delay()
        } else {
            self.outage.next_delay()
        }
    }

    /// Both back to `reconnect_min` after a CONNACK.
    fn reset(&mut self) {
        self.outage.reset();
        self.refused.reset();
    }
}

/// Whether the broker answered and refused for a reason that retrying soon
/// will not change (`ServiceUnavailable` is an outage: it will pass).
fn refused_by_broker(error: &ConnectionError) -> bool {
    use rumqttc::ConnectReturnCode as Code;
    matches!(
        error,
        ConnectionError::ConnectionRefused(
            Code::BadUserNamePassword
                | Code::NotAuthorized
                | Code::BadClientId
                | Code::RefusedProtocolVersion
        )
    )
}

/// The next reply to publish; never, without control.
async fn recv_outbound(
    outbound: &mut Option<tokio::sync::OwnedMutexGuard<tokio::sync::mpsc::Receiver<Outbound>>>,
) -> Option<Outbound> {
    match outbound {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Sends small packets at once. Without it a PUBACK followed by a publish
/// (a command's reply) waits for the broker's delayed ACK: about 40 ms.
pub(crate) fn no_delay(eventloop: &mut rumqttc::EventLoop) {
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::ConnectReturnCode as Code;

    #[test]
    fn only_a_refusal_that_will_not_pass_by_itself_backs_off_long() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let cases = [
            (ConnectionError::Io(io()), false),
            (ConnectionError::NetworkTimeout, false),
            (
                ConnectionError::ConnectionRefused(Code::ServiceUnavailable),
                false,
            ),
            (
                ConnectionError::ConnectionRefused(Code::BadUserNamePassword),
                true,
            ),
            (
                ConnectionError::ConnectionRefused(Code::NotAuthorized),
                true,
            ),
            (ConnectionError::ConnectionRefused(Code::BadClientId), true),
            (
                ConnectionError::ConnectionRefused(Code::RefusedProtocolVersion),
                true,
            ),
        ];
        for (error, refused) in cases {
            assert_eq!(refused_by_broker(&error), refused, "{error}");
        }
    }
}
