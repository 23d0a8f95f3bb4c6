//! The LoRaWAN adapter as the core sees it: the `[lorawan]` section
//! validates itself, claims its UDP port, binds it on open and serves.

use crate::config::LorawanConfig;
use sluice_adapter_common::{
    Adapter, BoxFuture, Claim, Context, OpenError, Opened, Resource, RunError,
};
use std::net::SocketAddr;

/// The adapter's name: its section, its counters and its logs.
pub const NAME: &str = "lorawan";

impl Adapter for LorawanConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self) -> Vec<(String, String)> {
        LorawanConfig::validate(self)
    }

    fn claims(&self) -> Vec<Claim> {
        vec![Claim {
            key: "listen".into(),
            resource: Resource::Udp(self.listen),
        }]
    }

    fn summary(&self) -> String {
        format!(
            "lorawan on UDP {} ({:?}), {} device(s)",
            self.listen,
            self.region,
            self.devices.len()
        )
        .to_lowercase()
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Opened>, OpenError>> {
        let config = self.clone();
        Box::pin(async move {
            let socket = tokio::net::UdpSocket::bind(config.listen)
                .await
                .map_err(|source| OpenError {
                    adapter: NAME,
                    resource: Resource::Udp(config.listen),
                    source,
                })?;
            let local = socket.local_addr().unwrap_or(config.listen);
            Ok(Box::new(Bound {
                config,
                socket,
                local,
            }) as Box<dyn Opened>)
        })
    }
}

/// The socket bound, ready to serve.
struct Bound {
    config: LorawanConfig,
    socket: tokio::net::UdpSocket,
    local: SocketAddr,
}

impl Opened for Bound {
    fn holds(&self) -> Vec<Resource> {
        vec![Resource::Udp(self.local)]
    }

    fn run(self: Box<Self>, context: Context) -> BoxFuture<'static, Result<(), RunError>> {
        Box::pin(crate::server::serve(self.socket, self.config, context))
    }
}
