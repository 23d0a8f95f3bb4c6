//! The demo's MQTT broker: rumqttd, embedded and configured in code, one
//! MQTT 3.1.1 listener on a free loopback port, no TLS, no websockets.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot::error::TryRecvError;

/// How long the broker may take to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(5);

/// Largest publish the broker takes: well above the demo's batches
/// (`batch_max_bytes`) and health messages.
pub const MAX_PAYLOAD: usize = 256 << 10;

/// A running embedded broker. rumqttd has no way to stop it: the thread
/// ends with the process.
pub struct EmbeddedBroker {
    port: u16,
    _thread: JoinHandle<()>,
}

/// Why the broker did not come up.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No free port could be found, or the thread could not start.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// rumqttd refused the config or stopped (it logs why at `error`).
    #[error("rumqttd stopped while starting: {0}")]
    Stopped(String),
    /// The listener did not accept connections in time.
    #[error("rumqttd did not accept connections on 127.0.0.1:{port} within {START_DEADLINE:?}")]
    NotListening {
        /// The port it was given.
        port: u16,
    },
}

impl EmbeddedBroker {
    /// Starts rumqttd on its own thread and waits until it accepts connections.
    pub async fn start() -> Result<EmbeddedBroker, BrokerError> {
        // rumqttd binds the address it is given and cannot report the port
        // of `:0`, so take a free port from the OS and hand it over.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let mut broker = rumqttd::Broker::new(config(port));
        let (failed, mut failure) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("demo-broker".into())
            .spawn(move || {
                // Blocks for as long as the listener runs.
                let outcome = broker.start();
                let _ = failed.send(match outcome {
                    Ok(()) => "the listener stopped (port taken?)".to_owned(),
                    Err(e) => e.to_string(),
                });
            })?;
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        loop {
            match failure.try_recv() {
                Ok(why) => return Err(BrokerError::Stopped(why)),
                Err(TryRecvError::Closed) => {
                    return Err(BrokerError::Stopped("its thread panicked".into()));
                }
                Err(TryRecvError::Empty) => {}
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(EmbeddedBroker {
                    port,
                    _thread: thread,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::NotListening { port });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// rumqttd's config: one v4 listener, limits sized for a gateway and a
/// viewer, everything else (cluster, console, metrics, bridge) off.
fn config(port: u16) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        // Time a client has to send CONNECT after the TCP connection.
        connection_timeout_ms: 5_000,
        max_payload_size: MAX_PAYLOAD,
        // Unacknowledged QoS 1 publishes towards one subscriber.
        max_inflight_count: 64,
        auth: None,
        external_auth: None,
        // Publishes to topics nobody subscribes are dropped, not kept in a
        // log of their own.
        dynamic_filters: false,
    };
    let server = rumqttd::ServerSettings {
        name: "demo-v4".into(),
        listen: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let router = rumqttd::RouterConfig {
        // The gateway, the viewer, and room for reconnects.
        max_connections: 16,
        // Messages read per QoS 0 subscription in one go.
        max_outgoing_packet_count: 64,
        // Each subscription keeps a log of at most count × size bytes in memory.
        max_segment_size: 1 << 20,
        max_segment_count: 4,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: rumqttd::Strategy::default(),
    };
    rumqttd::Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("demo".to_owned(), server)])),
        ..rumqttd::Config::default()
    }
}
