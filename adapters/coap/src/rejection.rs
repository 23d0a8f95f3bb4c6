//! Why the CoAP adapter turned a message away: one variant per counter,
//! shared by the server and the observer.

use sluice_adapter_common::{Rejection as Reject, Stage};

/// A message the CoAP adapter did not ingest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not a CoAP message at all, or not version 1.
    MalformedDatagram,
    /// Larger than any CoAP message (observer).
    TooLarge,
    /// A response, ACK or reset sent to the server, or an empty message.
    NotARequest,
    /// A retransmission of a message already taken in.
    Duplicate,
    /// An answer to nothing the observer asked (or asks any longer).
    Stray,
    /// The device reset the observer's request.
    Reset,
    /// A notification older than one already taken in (RFC 7641 §3.4).
    Stale,
    /// A path the server does not serve.
    UnknownPath,
    /// A method other than POST or PUT on a readings resource.
    Method,
    /// A device id the server does not accept.
    BadDevice,
    /// A device not on the allow-list.
    NotAllowed,
    /// A device over its request rate.
    RateLimited,
    /// A payload larger than `max_payload`.
    PayloadTooLarge,
    /// A broken block-wise transfer.
    Block,
    /// A block-wise response (the observer does not reassemble them).
    Blockwise,
    /// A Content-Format the adapter does not read.
    UnsupportedFormat,
    /// A payload that does not decode in its format.
    Malformed,
    /// The device answered with an error code.
    ErrorResponse,
    /// The device answered without content.
    UnexpectedResponse,
    /// Every worker was busy and the backlog full.
    BacklogFull,
    /// A DTLS record from a peer without a session that is not a ClientHello.
    NoSession,
    /// A DTLS ClientHello beyond `max_sessions`.
    TooManySessions,
    /// A DTLS handshake that failed or timed out: wrong key, unknown
    /// identity, untrusted certificate.
    Handshake,
    /// A DTLS device posting for a device id other than its identity.
    IdentityMismatch,
}

impl Reject for Rejection {
    fn stage(self) -> Stage {
        use Rejection::*;
        match self {
            MalformedDatagram | TooLarge | NotARequest | NoSession | TooManySessions => {
                Stage::Receive
            }
            Handshake | IdentityMismatch => Stage::Authenticate,
            Duplicate | Stray | Reset | Stale => Stage::Exchange,
            UnknownPath | Method | BadDevice | NotAllowed | RateLimited => Stage::Route,
            PayloadTooLarge | Block | Blockwise | UnsupportedFormat | Malformed => Stage::Decode,
            ErrorResponse | UnexpectedResponse => Stage::Device,
            BacklogFull => Stage::Ingest,
        }
    }

    fn reason(self) -> &'static str {
        use Rejection::*;
        match self {
            MalformedDatagram => "malformed-datagram",
            TooLarge => "too-large",
            NotARequest => "not-a-request",
            Duplicate => "duplicate",
            Stray => "stray",
            Reset => "reset",
            Stale => "stale",
            UnknownPath => "unknown-path",
            Method => "method",
            BadDevice => "bad-device",
            NotAllowed => "not-allowed",
            RateLimited => "rate-limited",
            PayloadTooLarge => "too-large",
            Block => "block",
            Blockwise => "blockwise",
            UnsupportedFormat => "unsupported-format",
            Malformed => "malformed",
            ErrorResponse => "error-response",
            UnexpectedResponse => "unexpected-response",
            BacklogFull => "backlog-full",
            NoSession => "no-session",
            TooManySessions => "too-many-sessions",
            Handshake => "handshake-failed",
            IdentityMismatch => "identity-mismatch",
        }
    }
}
