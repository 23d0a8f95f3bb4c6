//! A small CoAP client over one UDP socket: one request at a time (NSTART
//! = 1), confirmable ones retransmitted with exponential back-off (RFC 7252
//! §4.2), the response matched by message id and token, piggybacked or
//! separate (§5.2). Used by downlinks and the demo's devices; the observer
//! shares its [`Request`] encoding and [`empty`] messages.
//!
//! The pure parts ([`Request::encode`], the matching of one datagram) are
//! apart from [`Client::send`], the only place that awaits.

use crate::timing::Transmission;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use sluice_adapter_common::Random;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Content-Format text/plain; charset=utf-8 (RFC 7252 §12.3).
pub const TEXT_PLAIN: u16 = 0;
/// Content-Format application/octet-stream.
pub const OCTET_STREAM: u16 = 42;
/// Content-Format application/json.
pub const JSON: u16 = 50;

/// What to ask; the client adds the message id and token.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// CON (acknowledged, retransmitted) or NON.
    pub confirmable: bool,
    /// GET, POST, PUT, …
    pub method: RequestType,
    /// The Uri-Host option, for host names (an address is the default).
    pub host: Option<String>,
    /// Uri-Path segments.
    pub path: Vec<String>,
    /// The Observe option (RFC 7641): 0 registers, 1 deregisters.
    pub observe: Option<u32>,
    /// The Content-Format option.
    pub content_format: Option<u16>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Request {
    /// A confirmable `method` on `path`, without options or payload.
    pub fn new<S: Into<String>>(method: RequestType, path: impl IntoIterator<Item = S>) -> Request {
        Request {
            confirmable: true,
            method,
            host: None,
            path: path.into_iter().map(Into::into).collect(),
            observe: None,
            content_format: None,
            payload: Vec::new(),
        }
    }

    /// The same request carrying `payload` in `content_format`.
    pub fn with_payload(mut self, content_format: u16, payload: Vec<u8>) -> Request {
        self.content_format = Some(content_format);
        self.payload = payload;
        self
    }

    /// The message, with message id `mid` and `token`.
    pub fn packet(&self, mid: u16, token: &[u8]) -> Packet {
        let mut p = Packet::new();
        p.header.set_version(1);
        p.header.set_type(if self.confirmable {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        });
        p.header.code = MessageClass::Request(self.method);
        p.header.message_id = mid;
        p.set_token(token.to_vec());
        if let Some(host) = &self.host {
            p.add_option(CoapOption::UriHost, host.as_bytes().to_vec());
        }
        if let Some(v) = self.observe {
            p.set_observe_value(v);
        }
        for segment in &self.path {
            p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        if let Some(f) = self.content_format {
            p.add_option(
                CoapOption::ContentFormat,
                crate::option::encode_uint(u32::from(f)),
            );
        }
        p.payload = self.payload.clone();
        p
    }

    /// The message encoded.
    pub fn encode(&self, mid: u16, token: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.packet(mid, token)
            .to_bytes()
            .map_err(|e| ClientError::Encode(e.to_string()))
    }
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No acknowledgement or response in time (after every retransmission).
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The peer reset the request (RST).
    #[error("the peer reset the request")]
    Reset,
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The request cannot be encoded (an option too long, say).
    #[error("cannot encode the request: {0}")]
    Encode(String),
}

/// An empty ACK or RST (or ping) for message `mid` (RFC 7252 §4.1: no token).
pub fn empty(kind: MessageType, mid: u16) -> Vec<u8> {
    let kind_bits = match kind {
        MessageType::Confirmable => 0,
        MessageType::NonConfirmable => 1,
        MessageType::Acknowledgement => 2,
        MessageType::Reset => 3,
    };
    let [hi, lo] = mid.to_be_bytes();
    vec![0x40 | (kind_bits << 4), 0x00, hi, lo]
}

/// A response code as `class.detail`: `2.04`, `4.00`.
pub fn status(code: MessageClass) -> String {
    let b = u8::from(code);
    format!("{}.{:02}", b >> 5, b & 0x1f)
}

/// Whether a response code is a success (2.xx).
pub fn is_success(code: MessageClass) -> bool {
    u8::from(code) >> 5 == 2
}

/// What one datagram means to the exchange in flight.
#[derive(Debug, PartialEq)]
enum Step {
    /// The response; send `ack` first (it came confirmable).
    Response {
        /// The response.
        packet: Packet,
        /// The empty ACK it needs, if it was confirmable.
        ack: Option<Vec<u8>>,
    },
    /// An empty ACK: stop retransmitting; the response follows separately.
    Accepted,
    /// The peer reset the request.
    Reset,
    /// Not for this exchange; answer `rst` if it was confirmable.
    Stray {
        /// The RST to send, if any.
        rst: Option<Vec<u8>>,
    },
}

/// Matches one datagram against the request `mid`/`token` (pure).
fn step(mid: u16, token: &[u8], datagram: &[u8]) -> Step {
    let Ok(packet) = Packet::from_bytes(datagram) else {
        return Step::Stray { rst: None };
    };
    let same_mid = packet.header.message_id == mid;
    let same_token = packet.get_token() == token;
    let is_response = matches!(packet.header.code, MessageClass::Response(_));
    match packet.header.get_type() {
        MessageType::Acknowledgement if same_mid && packet.header.code == MessageClass::Empty => {
            Step::Accepted
        }
        MessageType::Acknowledgement if same_mid && same_token && is_response => {
            Step::Response { packet, ack: None }
        }
        MessageType::Reset if same_mid => Step::Reset,
        MessageType::Confirmable if same_token && is_response => Step::Response {
            ack: Some(empty(
                MessageType::Acknowledgement,
                packet.header.message_id,
            )),
            packet,
        },
        MessageType::NonConfirmable if same_token && is_response => {
            Step::Response { packet, ack: None }
        }
        // A request, a ping, or a response to nothing we asked.
        MessageType::Confirmable => Step::Stray {
            rst: Some(empty(MessageType::Reset, packet.header.message_id)),
        },
        _ => Step::Stray { rst: None },
    }
}

/// The client: one UDP socket, one request at a time.
#[derive(Debug)]
pub struct Client {
    socket: Option<UdpSocket>,
    timing: Transmission,
    random: Random,
    retransmissions: u64,
}

impl Client {
    /// A client that binds a socket of the peer's address family on its
    /// first request (and again if a later peer's family differs).
    pub fn new(timing: Transmission) -> Client {
        Client {
            socket: None,
            timing,
            random: Random::seeded(),
            retransmissions: 0,
        }
    }

    /// A client on a socket bound to `local` now.
    pub async fn bind(local: SocketAddr, timing: Transmission) -> io::Result<Client> {
        let mut client = Client::new(timing);
        client.socket = Some(UdpSocket::bind(local).await?);
        Ok(client)
    }

    /// Confirmable messages sent again after a timeout, in total.
    pub fn retransmissions(&self) -> u64 {
        self.retransmissions
    }

    /// Sends `request` to `peer` with a fresh message id and token and
    /// returns the response (a success or not: the caller reads its code).
    pub async fn send(
        &mut self,
        peer: SocketAddr,
        request: &Request,
    ) -> Result<Packet, ClientError> {
        let mid = self.random.next_u64() as u16;
        let token = self.random.next_u64().to_be_bytes();
        let bytes = request.encode(mid, &token)?;
        self.bind_for(peer).await?;
        let socket = self
            .socket
            .as_ref()
            .ok_or_else(|| io::Error::other("no socket"))?;
        let timing = self.timing;
        let started = Instant::now();
        let mut timeout = if request.confirmable {
            timing.first_timeout(&mut self.random)
        } else {
            // As long as a first confirmable transmission would wait.
            timing
                .ack_timeout
                .mul_f64(timing.ack_random_factor.max(1.0))
        };
        let mut retransmit = request.confirmable;
        let mut sent = 0u32;
        let mut buf = vec![0u8; Packet::MAX_SIZE + 1];
        socket.send_to(&bytes, peer).await?;
        let mut deadline = started + timeout;
        loop {
            let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await;
            let (n, from) = match received {
                Err(_elapsed) if retransmit && sent < timing.max_retransmit => {
                    sent += 1;
                    self.retransmissions += 1;
                    timeout *= 2;
                    deadline += timeout;
                    socket.send_to(&bytes, peer).await?;
                    continue;
                }
                Err(_elapsed) => return Err(ClientError::Timeout(started.elapsed())),
                // An ICMP report of an earlier send: the request is retransmitted anyway.
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Ok(Err(e)) => return Err(ClientError::Io(e)),
                Ok(Ok(received)) => received,
            };
            if from != peer {
                continue;
            }
            match step(mid, &token, &buf[..n]) {
                Step::Response { packet, ack } => {
                    if let Some(ack) = ack {
                        socket.send_to(&ack, peer).await?;
                    }
                    return Ok(packet);
                }
                Step::Accepted if retransmit => {
                    retransmit = false;
                    deadline = started + timing.max_transmit_wait();
                }
                Step::Accepted => {}
                Step::Reset => return Err(ClientError::Reset),
                Step::Stray { rst: Some(rst) } => {
                    socket.send_to(&rst, peer).await?;
                }
                Step::Stray { rst: None } => {}
            }
        }
    }

    /// Binds a socket for `peer`'s address family unless there is one.
    async fn bind_for(&mut self, peer: SocketAddr) -> io::Result<()> {
        let fits = |s: &UdpSocket| s.local_addr().is_ok_and(|a| a.is_ipv4() == peer.is_ipv4());
        if !self.socket.as_ref().is_some_and(fits) {
            let local = if peer.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            };
            self.socket = Some(UdpSocket::bind(local).await?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::ResponseType;

    const TOKEN: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    fn message(kind: MessageType, mid: u16, token: &[u8], code: MessageClass) -> Vec<u8> {
        let mut p = Packet::new();
        p.header.set_type(kind);
        p.header.message_id = mid;
        p.header.code = code;
        p.set_token(token.to_vec());
        p.payload = if code == MessageClass::Empty {
            Vec::new()
        } else {
            b"ok".to_vec()
        };
        p.to_bytes().expect("encodes")
    }

    fn changed() -> MessageClass {
        MessageClass::Response(ResponseType::Changed)
    }

    fn is_response(s: &Step, ack: Option<Vec<u8>>) -> bool {
        matches!(s, Step::Response { packet, ack: a } if packet.payload == b"ok" && *a == ack)
    }

    #[test]
    fn a_piggybacked_response_matches_by_message_id_and_token() {
        use MessageType::*;
        let ack = message(Acknowledgement, 10, &TOKEN, changed());
        assert!(is_response(&step(10, &TOKEN, &ack), None));
        let other_mid = message(Acknowledgement, 11, &TOKEN, changed());
        assert_eq!(step(10, &TOKEN, &other_mid), Step::Stray { rst: None });
        let other_token = message(Acknowledgement, 10, &[9], changed());
        assert_eq!(step(10, &TOKEN, &other_token), Step::Stray { rst: None });
    }

    #[test]
    fn an_empty_ack_then_a_separate_response_rfc_7252_section_5_2_2() {
        use MessageType::*;
        let empty_ack = empty(Acknowledgement, 10);
        assert_eq!(step(10, &TOKEN, &empty_ack), Step::Accepted);
        let con = message(Confirmable, 500, &TOKEN, changed());
        assert!(is_response(
            &step(10, &TOKEN, &con),
            Some(empty(Acknowledgement, 500))
        ));
        let non = message(NonConfirmable, 501, &TOKEN, changed());
        assert!(is_response(&step(10, &TOKEN, &non), None));
    }

    #[test]
    fn resets_and_strays() {
        use MessageType::*;
        assert_eq!(step(10, &TOKEN, &empty(Reset, 10)), Step::Reset);
        assert_eq!(
            step(10, &TOKEN, &empty(Reset, 11)),
            Step::Stray { rst: None }
        );
        let other = message(Confirmable, 600, &[7], changed());
        assert_eq!(
            step(10, &TOKEN, &other),
            Step::Stray {
                rst: Some(empty(Reset, 600))
            },
            "a confirmable stray is reset"
        );
        let ping = empty(Confirmable, 601);
        assert_eq!(
            step(10, &TOKEN, &ping),
            Step::Stray {
                rst: Some(empty(Reset, 601))
            }
        );
        let request = message(
            Confirmable,
            602,
            &TOKEN,
            MessageClass::Request(RequestType::Get),
        );
        assert_eq!(
            step(10, &TOKEN, &request),
            Step::Stray {
                rst: Some(empty(Reset, 602))
            }
        );
        assert_eq!(step(10, &TOKEN, &[0xFF]), Step::Stray { rst: None });
    }

    #[test]
    fn a_request_encodes_its_options_and_payload() {
        let mut r = Request::new(RequestType::Put, ["config", "interval"])
            .with_payload(TEXT_PLAIN, b"30".to_vec());
        r.host = Some("sensor.lan".into());
        let bytes = r.encode(7, &TOKEN).expect("encodes");
        let p = Packet::from_bytes(&bytes).expect("decodes");
        assert_eq!(p.header.get_type(), MessageType::Confirmable);
        assert_eq!(p.header.code, MessageClass::Request(RequestType::Put));
        assert_eq!(p.header.message_id, 7);
        assert_eq!(p.get_token(), TOKEN);
        let path: Vec<Vec<u8>> = p
            .get_option(CoapOption::UriPath)
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default();
        assert_eq!(path, [b"config".to_vec(), b"interval".to_vec()]);
        let host = p.get_first_option(CoapOption::UriHost);
        assert_eq!(host.map(Vec::as_slice), Some(&b"sensor.lan"[..]));
        // Text/plain is 0: an empty option value (RFC 7252 §3.2).
        let format = p.get_first_option(CoapOption::ContentFormat);
        assert_eq!(format.map(Vec::len), Some(0));
        assert_eq!(p.payload, b"30");
        let long = Request::new(RequestType::Get, ["x".repeat(70_000)]);
        assert!(matches!(
            long.encode(1, &TOKEN),
            Err(ClientError::Encode(_))
        ));
    }

    #[test]
    fn statuses_read_as_class_dot_detail() {
        let code = |r| MessageClass::Response(r);
        assert_eq!(status(code(ResponseType::BadRequest)), "4.00");
        assert_eq!(status(code(ResponseType::Changed)), "2.04");
        assert_eq!(status(code(ResponseType::ServiceUnavailable)), "5.03");
        assert!(is_success(code(ResponseType::Changed)));
        assert!(!is_success(code(ResponseType::BadRequest)));
    }

    fn quick() -> Transmission {
        Transmission {
            ack_timeout: Duration::from_millis(20),
            ack_random_factor: 1.5,
            max_retransmit: 2,
        }
    }

    #[tokio::test]
    async fn a_silent_peer_gets_every_retransmission_then_a_timeout() {
        let peer = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = peer.local_addr().expect("address");
        let mut client = Client::new(quick());
        let request = Request::new(RequestType::Post, ["a"]);
        let result = client.send(addr, &request).await;
        assert!(matches!(result, Err(ClientError::Timeout(_))), "{result:?}");
        assert_eq!(client.retransmissions(), 2);
        let mut buf = [0u8; 64];
        let mut mids = Vec::new();
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(50), peer.recv(&mut buf)).await
        {
            mids.push(
                Packet::from_bytes(&buf[..n])
                    .expect("decodes")
                    .header
                    .message_id,
            );
        }
        assert_eq!(mids.len(), 3, "first transmission and two retransmissions");
        assert!(mids.iter().all(|m| *m == mids[0]), "same message id");
    }

    #[tokio::test]
    async fn a_separate_response_is_acknowledged() {
        let peer = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = peer.local_addr().expect("address");
        let device = async {
            let mut buf = [0u8; 256];
            let (n, from) = peer.recv_from(&mut buf).await.expect("request");
            let req = Packet::from_bytes(&buf[..n]).expect("decodes");
            let mid = req.header.message_id;
            let ack = empty(MessageType::Acknowledgement, mid);
            peer.send_to(&ack, from).await.expect("send");
            let token = req.get_token().to_vec();
            let separate = message(MessageType::Confirmable, 4242, &token, changed());
            peer.send_to(&separate, from).await.expect("send");
            let (n, _) = peer.recv_from(&mut buf).await.expect("ACK");
            buf[..n].to_vec()
        };
        let mut client = Client::new(quick());
        let request = Request::new(RequestType::Put, ["led"]);
        let (answer, acked) = tokio::join!(client.send(addr, &request), device);
        let answer = answer.expect("a response");
        assert_eq!(answer.header.code, changed());
        assert_eq!(acked, empty(MessageType::Acknowledgement, 4242));
    }
}
