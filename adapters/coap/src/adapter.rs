//! The CoAP adapter as the core sees it: the `[coap]` section validates
//! itself, claims its UDP ports, opens them, and runs the server, the
//! observer and downlinks with one context.

use crate::config::CoapConfig;
use crate::directory::Directory;
use crate::server::Bound;
use crate::{downlink, observe};
use sluice_adapter_common::{
    Adapter, BoxFuture, Claim, Context, OpenError, Opened, Resource, RunError,
};
use std::sync::Arc;

/// The adapter's name: its section, its counters and its logs.
pub const NAME: &str = "coap";

impl Adapter for CoapConfig {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self) -> Vec<(String, String)> {
        CoapConfig::validate(self)
    }

    fn claims(&self) -> Vec<Claim> {
        let plain = self.listen.iter().enumerate().map(|(i, addr)| Claim {
            key: format!("listen[{i}]"),
            resource: Resource::Udp(*addr),
        });
        let secure = self
            .dtls
            .iter()
            .flat_map(|d| d.listen.iter().enumerate())
            .map(|(i, addr)| Claim {
                key: format!("dtls.listen[{i}]"),
                resource: Resource::Udp(*addr),
            });
        plain.chain(secure).collect()
    }

    fn summary(&self) -> String {
        let listen: Vec<String> = self.listen.iter().map(|a| a.to_string()).collect();
        let secure = match &self.dtls {
            Some(d) => {
                let listen: Vec<String> = d.listen.iter().map(|a| a.to_string()).collect();
                format!(", coaps (DTLS) on [{}]", listen.join(", "))
            }
            None => String::new(),
        };
        format!(
            "coap on [{}]{secure} at /{}/<device>, {} observed device(s)",
            listen.join(", "),
            self.path,
            self.observe.len()
        )
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Opened>, OpenError>> {
        Box::pin(async move {
            let server = if self.listen.is_empty() && self.dtls.is_none() {
                None
            } else {
                Some(
                    Bound::bind(self.clone()).map_err(|(addr, source)| OpenError {
                        adapter: NAME,
                        resource: Resource::Udp(addr),
                        source,
                    })?,
                )
            };
            Ok(Box::new(Ready {
                server,
                config: self.clone(),
            }) as Box<dyn Opened>)
        })
    }
}

/// The server's sockets bound; the observer and downlinks need none yet.
struct Ready {
    server: Option<Bound>,
    config: CoapConfig,
}

impl Opened for Ready {
    fn holds(&self) -> Vec<Resource> {
        self.server
            .iter()
            .flat_map(Bound::local_addrs)
            .map(Resource::Udp)
            .collect()
    }

    fn run(self: Box<Self>, context: Context) -> BoxFuture<'static, Result<(), RunError>> {
        let Ready { server, config } = *self;
        Box::pin(async move {
            let directory = Arc::new(Directory::default());
            let server = async {
                if let Some(server) = server {
                    server
                        .serve(
                            context.sink.clone(),
                            context.counters.clone(),
                            directory.clone(),
                            context.shutdown.clone(),
                        )
                        .await;
                }
            };
            let observer = observe::run(
                config.observe.clone(),
                context.sink.clone(),
                context.counters.clone(),
                context.shutdown.clone(),
            );
            let downlinks = downlink::serve(
                context.downlinks.clone(),
                directory.clone(),
                config.observe.clone(),
                context.shutdown.clone(),
            );
            tokio::join!(server, observer, downlinks);
            Ok(())
        })
    }
}
