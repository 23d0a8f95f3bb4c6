//! Downlinks to CoAP devices: each becomes a confirmable PUT (set) or POST
//! (invoke) to the device, at the address of its `[[coap.observe]]` URI or,
//! failing that, where it last posted from. At most [`CONCURRENT`] are in
//! flight, one [`Client`] each; shutdown answers those in flight `Stopped`.

use crate::client::{self, Client, ClientError, OCTET_STREAM, Request, TEXT_PLAIN};
use crate::config::ObserveConfig;
use crate::directory::Directory;
use crate::observe::{Target, parse_uri};
use crate::timing::Transmission;
use coap_lite::RequestType;
use sluice_adapter_common::downlink::{Answer, Value, Verb};
use sluice_adapter_common::{Downlink, DownlinkError, DownlinkReceiver, Shutdown};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Downlinks in flight at most; more wait in the core's queue.
pub const CONCURRENT: usize = 8;

/// How to find devices: observed ones by their URI, others in the directory.
#[derive(Debug)]
struct Routes {
    observed: HashMap<String, Target>,
    directory: Arc<Directory>,
}

/// Where one downlink goes.
#[derive(Debug, PartialEq)]
enum Route {
    /// An observed device: resolve its host.
    Host {
        /// Host name or address.
        host: String,
        /// UDP port.
        port: u16,
        /// The Uri-Host option, for a host name.
        uri_host: Option<String>,
    },
    /// A device heard from at this address.
    Heard(SocketAddr),
}

impl Routes {
    /// Observed devices with a valid URI (others were reported by `validate`).
    fn new(observed: &[ObserveConfig], directory: Arc<Directory>) -> Routes {
        let observed = observed
            .iter()
            .filter_map(|o| Some((o.device.clone(), parse_uri(&o.uri).ok()?)))
            .collect();
        Routes {
            observed,
            directory,
        }
    }

    /// Where `device` is, if known.
    fn route(&self, device: &str) -> Option<Route> {
        if let Some(t) = self.observed.get(device) {
            return Some(Route::Host {
                host: t.host.clone(),
                port: t.port,
                uri_host: t.uri_host(),
            });
        }
        self.directory.lookup(device).map(Route::Heard)
    }
}

/// The request a downlink becomes: PUT or POST on the resource's segments;
/// text/plain, or octet-stream for bytes, or no payload for `Empty`.
fn request(downlink: &Downlink) -> Request {
    let method = match downlink.verb {
        Verb::Set => RequestType::Put,
        Verb::Invoke => RequestType::Post,
    };
    let path = downlink.resource.split('/').filter(|s| !s.is_empty());
    let request = Request::new(method, path);
    match &downlink.value {
        Value::Empty => request,
        Value::Bytes(b) => request.with_payload(OCTET_STREAM, b.clone()),
        v => request.with_payload(TEXT_PLAIN, v.to_text_bytes()),
    }
}

/// The device's response as the downlink's answer: 2.xx is an answer,
/// anything else a refusal with the diagnostic payload.
fn answer(response: coap_lite::Packet) -> Result<Answer, DownlinkError> {
    let status = client::status(response.header.code);
    if client::is_success(response.header.code) {
        Ok(Answer {
            status,
            payload: response.payload,
        })
    } else {
        Err(DownlinkError::Refused {
            status,
            message: String::from_utf8_lossy(&response.payload).into_owned(),
        })
    }
}

impl From<ClientError> for DownlinkError {
    fn from(e: ClientError) -> DownlinkError {
        match e {
            ClientError::Timeout(after) => DownlinkError::Timeout(after),
            ClientError::Reset => DownlinkError::Refused {
                status: "RST".into(),
                message: "the device reset the request".into(),
            },
            ClientError::Io(e) => DownlinkError::Io(e.to_string()),
            ClientError::Encode(e) => DownlinkError::Unsupported(e),
        }
    }
}

/// Answers downlinks until shutdown, at most [`CONCURRENT`] at once.
pub async fn serve(
    downlinks: DownlinkReceiver,
    directory: Arc<Directory>,
    observed: Vec<ObserveConfig>,
    shutdown: Shutdown,
) {
    let routes = Arc::new(Routes::new(&observed, directory));
    let mut workers = JoinSet::new();
    for _ in 0..CONCURRENT {
        workers.spawn(worker(downlinks.clone(), routes.clone(), shutdown.clone()));
    }
    while let Some(done) = workers.join_next().await {
        if let Err(e) = done {
            warn!(error = %e, "Downlink worker failed");
        }
    }
}

/// Takes one downlink at a time, until shutdown or the core hangs up.
async fn worker(downlinks: DownlinkReceiver, routes: Arc<Routes>, mut shutdown: Shutdown) {
    let mut client = Client::new(Transmission::default());
    loop {
        let request = tokio::select! {
            _ = shutdown.wait() => return,
            request = downlinks.recv() => match request {
                Some(r) => r,
                None => return,
            },
        };
        let downlink = request.downlink.clone();
        let result = tokio::select! {
            _ = shutdown.wait() => {
                request.answer(Err(DownlinkError::Stopped));
                return;
            }
            result = deliver(&mut client, &routes, &downlink) => result,
        };
        match &result {
            Ok(a) => debug!(downlink = %downlink, status = %a.status, "Downlink answered"),
            Err(e) => warn!(downlink = %downlink, error = %e, "Downlink failed"),
        }
        request.answer(result);
    }
}

/// Sends one downlink and waits for the device's response.
async fn deliver(
    client: &mut Client,
    routes: &Routes,
    downlink: &Downlink,
) -> Result<Answer, DownlinkError> {
    let route = routes
        .route(&downlink.device)
        .ok_or_else(|| DownlinkError::UnknownDevice(downlink.device.clone()))?;
    let mut request = request(downlink);
    let peer = match route {
        Route::Heard(addr) => addr,
        Route::Host {
            host,
            port,
            uri_host,
        } => {
            request.host = uri_host;
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| DownlinkError::Io(format!("cannot resolve {host}: {e}")))?
                .next()
                .ok_or_else(|| DownlinkError::Io(format!("{host} has no address")))?
        }
    };
    answer(client.send(peer, &request).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::{CoapOption, MessageClass, Packet, ResponseType};

    #[test]
    fn verbs_and_values_become_methods_and_content_formats() {
        let cases = [
            (
                "set text",
                Verb::Set,
                Value::Int(30),
                RequestType::Put,
                Some(TEXT_PLAIN),
                &b"30"[..],
            ),
            (
                "invoke bytes",
                Verb::Invoke,
                Value::Bytes(vec![1, 2]),
                RequestType::Post,
                Some(OCTET_STREAM),
                &[1, 2][..],
            ),
            (
                "invoke empty",
                Verb::Invoke,
                Value::Empty,
                RequestType::Post,
                None,
                &[][..],
            ),
        ];
        for (name, verb, value, method, format, payload) in cases {
            let r = request(&Downlink::new("d", "config/interval", verb, value));
            assert_eq!(r.method, method, "{name}");
            assert_eq!(r.content_format, format, "{name}");
            assert_eq!(r.payload, payload, "{name}");
            assert_eq!(r.path, ["config", "interval"], "{name}");
            assert!(r.confirmable, "{name}");
        }
    }

    #[test]
    fn observed_devices_by_uri_others_where_last_heard() {
        let directory = Arc::new(Directory::default());
        let heard = SocketAddr::from(([127, 0, 0, 1], 40_000));
        directory.heard("poster", heard);
        let observed = [ObserveConfig {
            device: "meter".into(),
            uri: "coap://meter.lan:5700/sensors/temp".into(),
            observe: true,
            poll: sluice_adapter_common::HumanDuration::secs(30),
        }];
        let routes = Routes::new(&observed, directory);
        assert_eq!(
            routes.route("meter"),
            Some(Route::Host {
                host: "meter.lan".into(),
                port: 5700,
                uri_host: Some("meter.lan".into()),
            })
        );
        assert_eq!(routes.route("poster"), Some(Route::Heard(heard)));
        assert_eq!(routes.route("stranger"), None);
    }

    fn response(code: ResponseType, payload: &[u8]) -> Packet {
        let mut p = Packet::new();
        p.header.code = MessageClass::Response(code);
        p.add_option(CoapOption::ContentFormat, vec![]);
        p.payload = payload.to_vec();
        p
    }

    #[test]
    fn success_is_an_answer_errors_are_refusals() {
        assert_eq!(
            answer(response(ResponseType::Changed, b"on")),
            Ok(Answer {
                status: "2.04".into(),
                payload: b"on".to_vec()
            })
        );
        assert_eq!(
            answer(response(ResponseType::NotFound, b"no such thing")),
            Err(DownlinkError::Refused {
                status: "4.04".into(),
                message: "no such thing".into()
            })
        );
    }
}
