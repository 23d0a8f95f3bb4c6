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
    /// A critical option not recognised, of a bad length or repeated
    /// (RFC 7252 §5.4): `4.02`, or a reset for a non-confirmable request.
    BadOption,
    /// Proxy-Uri or Proxy-Scheme: `5.05`.
    Proxy,
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
    /// A reading name (third path segment) the server does not accept.
    BadName,
    /// A device not on the allow-list.
    NotAllowed,
    /// A device over its request rate.
    RateLimited,
    /// A payload larger than `max_payload`.
    PayloadTooLarge,
    /// A broken block-wise transfer (SZX 7, a block of the wrong size).
    Block,
    /// A Block1 block out of sequence, or continuing no upload (`4.08`).
    BlockIncomplete,
    /// A new Block1 upload while as many as allowed are in progress (`5.03`).
    BlockBusy,
    /// A Block1 upload abandoned: no block for the exchange lifetime.
    BlockExpired,
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
            MalformedDatagram | TooLarge | NotARequest | BadOption | NoSession
            | TooManySessions => Stage::Receive,
            Handshake | IdentityMismatch => Stage::Authenticate,
            Duplicate | Stray | Reset | Stale => Stage::Exchange,
            UnknownPath | Proxy | Method | BadDevice | BadName | NotAllowed | RateLimited => {
                Stage::Route
            }
            PayloadTooLarge | Block | BlockIncomplete | BlockBusy | BlockExpired | Blockwise
            | UnsupportedFormat | Malformed => Stage::Decode,
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
            BadOption => "bad-option",
            Proxy => "proxy",
            Duplicate => "duplicate",
            Stray => "stray",
            Reset => "reset",
            Stale => "stale",
            UnknownPath => "unknown-path",
            Method => "method",
            BadDevice => "bad-device",
            BadName => "bad-name",
            NotAllowed => "not-allowed",
            RateLimited => "rate-limited",
            PayloadTooLarge => "too-large",
            Block => "block",
            BlockIncomplete => "block-incomplete",
            BlockBusy => "block-busy",
            BlockExpired => "block-expired",
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
