//! The operator's side of control (`sluice cmd`): a short-lived MQTT
//! client that subscribes to the replies first, then publishes signed
//! commands and collects the replies. It lives here because only the
//! uplink knows topic names and the MQTT client.

use super::options::{Topics, all_replies_filter, fleet_cmd_topic};
use crate::config::BrokerUrl;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use std::time::Duration;
use tokio::sync::mpsc;

/// Where commands go.
#[derive(Clone, Debug)]
pub enum Target {
    /// One gateway by id.
    Gateway(String),
    /// Every gateway under the root.
    Fleet,
}

/// A connection to the broker for sending commands.
pub struct OperatorSession {
    client: AsyncClient,
    replies: mpsc::Receiver<(String, Vec<u8>)>,
    task: tokio::task::JoinHandle<()>,
    /// The topic commands are published to (and signed for).
    pub cmd_topic: String,
}

/// Why the session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The broker could not be reached or refused.
    #[error("broker {url}: {message}")]
    Connect {
        /// The broker.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// TLS brokers need a config this tool does not take.
    #[error(
        "mqtts:// is not supported by `sluice cmd`; use a plain listener bound to a trusted network, or --local"
    )]
    Tls,
}

/// Connects, subscribes to the replies of `target` and waits for the
/// subscription to be granted, so no reply can be missed.
pub async fn connect(
    url: &BrokerUrl,
    credentials: Option<(String, String)>,
    root: &str,
    target: &Target,
    timeout: Duration,
) -> Result<OperatorSession, OperatorError> {
    if url.tls {
        return Err(OperatorError::Tls);
    }
    let fail = |message: String| OperatorError::Connect {
        url: url.to_string(),
        message,
    };
    let id = format!(
        "sluice-cmd-{}",
        &super::super::control::envelope::nonce()[..12]
    );
    let mut o = MqttOptions::new(id, url.host.clone(), url.port);
    o.set_clean_session(true);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(8 << 20, 8 << 20);
    if let Some((user, pass)) = credentials {
        o.set_credentials(user, pass);
    }
    let (client, mut eventloop) = AsyncClient::new(o, 64);
    super::no_delay(&mut eventloop);
    let (cmd_topic, filter) = match target {
        Target::Gateway(gw) => {
            let t = Topics::of(root, gw);
            (t.cmd, t.reply)
        }
        Target::Fleet => (fleet_cmd_topic(root), all_replies_filter(root)),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    // Connect and subscribe before anything is sent.
    loop {
        let event = tokio::time::timeout_at(deadline, eventloop.poll())
            .await
            .map_err(|_| fail("no answer in time".into()))?
            .map_err(|e| fail(e.to_string()))?;
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                client
                    .subscribe(filter.as_str(), QoS::AtLeastOnce)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
            }
            Event::Incoming(Packet::SubAck(_)) => break,
            _ => {}
        }
    }
    let (tx, replies) = mpsc::channel(1024);
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send((p.topic, p.payload.to_vec())).await.is_err() {
                        return;
                    }
                }
                // Closing: the DISCONNECT is on its way, nothing more comes.
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Connection to the broker lost");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    Ok(OperatorSession {
        client,
        replies,
        task,
        cmd_topic,
    })
}

impl OperatorSession {
    /// Publishes a signed command (QoS 1).
    pub async fn send(&self, payload: Vec<u8>) -> Result<(), String> {
        self.client
            .publish(self.cmd_topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| e.to_string())
    }

    /// The next reply (topic, payload) before `deadline`.
    pub async fn next_reply(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Option<(String, Vec<u8>)> {
        tokio::time::timeout_at(deadline, self.replies.recv())
            .await
            .ok()
            .flatten()
    }

    /// Disconnects.
    pub async fn close(self) {
        let _ = self.client.disconnect().await;
        // The event loop ends once it has sent DISCONNECT; a broker gone
        // quiet does not hold the tool up for long.
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_millis(200), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
