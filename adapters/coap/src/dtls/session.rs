//! One DTLS session with one peer, without I/O: datagrams from the peer go
//! in, CoAP messages in clear and datagrams for the peer come out. OpenSSL
//! reads and writes a [`Datagrams`] buffer, one datagram per read or write,
//! so the listener alone owns the socket.

use super::context::{Acceptor, MTU};
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::ssl::{ErrorCode, Ssl, SslRef, SslStream};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// Datagrams waiting for OpenSSL, and those it wrote.
#[derive(Debug, Default)]
pub struct Datagrams {
    inbound: VecDeque<Vec<u8>>,
    outbound: Vec<Vec<u8>>,
}

impl Read for Datagrams {
    /// One whole datagram per read; "would block" when there is none.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(datagram) = self.inbound.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let n = datagram.len().min(buf.len());
        buf[..n].copy_from_slice(&datagram[..n]);
        Ok(n)
    }
}

impl Write for Datagrams {
    /// Each write is one datagram.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbound.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The handshake failed: wrong key, unknown identity, untrusted certificate, …
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The peer authenticated with nothing Sluice can name it by.
    #[error("the peer has no identity (no PSK identity, no certificate Common Name)")]
    NoIdentity,
    /// The peer closed the session (close_notify).
    #[error("closed by the peer")]
    Closed,
    /// The session broke after the handshake.
    #[error("{0}")]
    Broken(String),
}

/// One peer's DTLS session.
pub struct Session {
    stream: SslStream<Datagrams>,
    open: bool,
    /// Set once the session has failed or closed.
    over: bool,
    identity: Option<String>,
    /// Where records are decrypted into.
    buf: Vec<u8>,
}

/// The largest plaintext a DTLS record carries (RFC 6347 §4.1).
const MAX_PLAINTEXT: usize = 1 << 14;

/// What a datagram from the peer brought.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// CoAP messages, decrypted.
    pub messages: Vec<Vec<u8>>,
    /// Whether the handshake completed with this datagram.
    pub established: bool,
}

impl Session {
    /// A server session for `peer`, waiting for its handshake.
    pub fn accept(acceptor: &Acceptor, peer: SocketAddr) -> Result<Session, ErrorStack> {
        let mut ssl = Ssl::new(&acceptor.context)?;
        ssl.set_ex_data(acceptor.peer, peer);
        ssl.set_mtu(MTU)?;
        ssl.set_accept_state();
        Ok(Session {
            stream: SslStream::new(ssl, Datagrams::default())?,
            open: false,
            over: false,
            identity: None,
            buf: vec![0; MAX_PLAINTEXT],
        })
    }

    /// The peer's identity once the handshake is done: its PSK identity or
    /// its certificate's Common Name.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// Whether the handshake is done.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Takes a datagram from the peer. Records that fail to decrypt are
    /// dropped by OpenSSL, as DTLS says; an error ends the session.
    pub fn receive(&mut self, datagram: Vec<u8>) -> Result<Received, SessionError> {
        if self.over {
            return Err(SessionError::Closed);
        }
        self.stream.get_mut().inbound.push_back(datagram);
        let mut received = Received::default();
        if !self.open {
            match self.stream.do_handshake() {
                Ok(()) => {}
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(received),
                Err(e) => {
                    self.over = true;
                    return Err(SessionError::Handshake(e.to_string()));
                }
            }
            let Some(identity) = identity(self.stream.ssl()) else {
                self.over = true;
                return Err(SessionError::NoIdentity);
            };
            self.identity = Some(identity);
            self.open = true;
            received.established = true;
        }
        // Application data may follow the Finished in one flight.
        let result = read_all(&mut self.stream, &mut self.buf, &mut received.messages);
        if result.is_err() {
            self.over = true;
        }
        result.map(|()| received)
    }

    /// Encrypts a CoAP message for the peer (see [`Session::outgoing`]).
    pub fn send(&mut self, message: &[u8]) -> Result<(), SessionError> {
        if !self.open || self.over {
            return Err(SessionError::Closed);
        }
        self.stream
            .ssl_write(message)
            .map(drop)
            .map_err(|e| SessionError::Broken(e.to_string()))
    }

    /// Says goodbye (close_notify), for an idle session.
    pub fn close(&mut self) {
        if self.open && !self.over {
            let _ = self.stream.shutdown();
        }
        self.over = true;
    }

    /// Datagrams for the peer, written since the last call (handshake
    /// flights, records, alerts).
    pub fn outgoing(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.stream.get_mut().outbound)
    }
}

/// Every whole message OpenSSL can decrypt from what arrived.
fn read_all(
    stream: &mut SslStream<Datagrams>,
    buf: &mut [u8],
    out: &mut Vec<Vec<u8>>,
) -> Result<(), SessionError> {
    loop {
        match stream.ssl_read(buf) {
            Ok(n) => out.push(buf[..n].to_vec()),
            Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Err(SessionError::Closed),
            Err(e) => return Err(SessionError::Broken(e.to_string())),
        }
    }
}

/// The PSK identity, or else the certificate's Common Name.
fn identity(ssl: &SslRef) -> Option<String> {
    if let Some(id) = ssl.psk_identity() {
        return String::from_utf8(id.to_vec()).ok();
    }
    let cert = ssl.peer_certificate()?;
    let cn = cert.subject_name().entries_by_nid(Nid::COMMONNAME).next()?;
    cn.data().to_string().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::config::{DtlsConfig, Secret};
    use openssl::ssl::{SslContextBuilder, SslMethod};

    fn acceptor() -> Acceptor {
        let config = DtlsConfig {
            psk: [("sensor-1".to_owned(), Secret::parse("right").expect("key"))].into(),
            ..DtlsConfig::default()
        };
        Acceptor::new(&config).expect("acceptor")
    }

    /// A DTLS client with a pre-shared key, in memory.
    fn client(identity: &'static str, key: &'static [u8]) -> SslStream<Datagrams> {
        let mut b = SslContextBuilder::new(SslMethod::dtls_client()).expect("client context");
        b.set_psk_client_callback(move |_ssl, _hint, id, psk| {
            id[..identity.len()].copy_from_slice(identity.as_bytes());
            id[identity.len()] = 0;
            psk[..key.len()].copy_from_slice(key);
            Ok(key.len())
        });
        b.set_options(openssl::ssl::SslOptions::NO_QUERY_MTU);
        let mut ssl = Ssl::new(&b.build()).expect("client ssl");
        ssl.set_mtu(MTU).expect("client mtu");
        ssl.set_connect_state();
        SslStream::new(ssl, Datagrams::default()).expect("client stream")
    }

    /// Moves datagrams both ways until neither side has more to say; what
    /// the server decrypted, and each server result.
    fn shake(
        client: &mut SslStream<Datagrams>,
        server: &mut Session,
    ) -> Vec<Result<Received, String>> {
        let mut results = Vec::new();
        for _ in 0..20 {
            if !matches!(client.do_handshake(), Ok(())) {
                // Still shaking hands (or failed): whatever it wrote goes out below.
            }
            let to_server = std::mem::take(&mut client.get_mut().outbound);
            if to_server.is_empty() {
                break;
            }
            for datagram in to_server {
                results.push(server.receive(datagram).map_err(|e| e.to_string()));
            }
            client.get_mut().inbound.extend(server.outgoing());
        }
        results
    }

    #[test]
    fn a_device_with_the_right_key_is_known_by_its_identity_and_talks_both_ways() {
        let mut server =
            Session::accept(&acceptor(), "127.0.0.1:5000".parse().expect("addr")).expect("session");
        let mut client = client("sensor-1", b"right");
        let results = shake(&mut client, &mut server);
        assert!(server.is_open(), "{results:?}");
        assert_eq!(server.identity(), Some("sensor-1"));
        assert_eq!(
            results
                .iter()
                .filter(|r| matches!(r, Ok(r) if r.established))
                .count(),
            1
        );
        client.ssl_write(b"coap request").expect("client write");
        let datagrams = std::mem::take(&mut client.get_mut().outbound);
        let received: Vec<Vec<u8>> = datagrams
            .into_iter()
            .flat_map(|d| server.receive(d).expect("record").messages)
            .collect();
        assert_eq!(received, [b"coap request".to_vec()]);
        server.send(b"coap answer").expect("server write");
        client.get_mut().inbound.extend(server.outgoing());
        let mut buf = [0u8; 64];
        let n = client.ssl_read(&mut buf).expect("client read");
        assert_eq!(&buf[..n], b"coap answer");
    }

    #[test]
    fn the_first_hello_gets_a_cookie_not_a_certificate_flight() {
        let mut server =
            Session::accept(&acceptor(), "127.0.0.1:5000".parse().expect("addr")).expect("session");
        let mut client = client("sensor-1", b"right");
        assert!(client.do_handshake().is_err(), "waits for the server");
        let hello = std::mem::take(&mut client.get_mut().outbound);
        assert_eq!(hello.len(), 1);
        assert_eq!(
            server.receive(hello[0].clone()).map(|r| r.established).ok(),
            Some(false)
        );
        let answer = server.outgoing();
        // One record: handshake (22), message type 3 = HelloVerifyRequest.
        assert_eq!(answer.len(), 1);
        assert_eq!((answer[0][0], answer[0][13]), (22, 3));
    }

    #[test]
    fn an_unknown_identity_fails_and_a_wrong_key_never_opens() {
        let addr: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let mut server = Session::accept(&acceptor(), addr).expect("session");
        let results = shake(&mut client("stranger", b"right"), &mut server);
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(e) if e.starts_with("handshake failed"))),
            "{results:?}"
        );
        assert!(!server.is_open());
        assert!(server.receive(vec![22; 20]).is_err(), "the session is over");

        let mut server = Session::accept(&acceptor(), addr).expect("session");
        let results = shake(&mut client("sensor-1", b"wrong"), &mut server);
        // DTLS drops the Finished it cannot decrypt: no error, no session.
        assert!(!server.is_open(), "{results:?}");
        assert_eq!(server.identity(), None);
    }
}
