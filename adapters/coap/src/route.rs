//! A request's way to events, without I/O: option rules, resource, method,
//! device and DTLS identity, allow-list, Block1 assembly, rate, content
//! format and payload. Whatever needs no durability is answered at once
//! with an [`Answer`]; the server submits the events of the rest.

use crate::block1::{self, Assembler, Block, Step};
use crate::config::CoapConfig;
use crate::directory::Directory;
use crate::option::{self, OptionError, encode_uint, uint_option};
use crate::path::{self, PathError, Resource};
use crate::payload::{self, Format};
use crate::rate::RateLimit;
use crate::rejection::Rejection;
use coap_lite::{
    CoapOption, CoapRequest, ContentFormat, MessageClass, MessageType, Packet, RequestType,
    ResponseType,
};
use sluice_adapter_common::Counters;
use sluice_adapter_common::clock::now_ms;
use sluice_event::Event;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Block1 uploads in progress at once; each holds up to `max_payload`.
const MAX_UPLOADS: usize = 64;

/// Who sent a request.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    /// Its address.
    pub(crate) peer: SocketAddr,
    /// The DTLS identity the peer proved; `None` in clear.
    pub(crate) identity: Option<Arc<str>>,
}

/// What routing keeps between requests: budgets, uploads in progress, and
/// where devices were last heard from.
pub(crate) struct Router {
    /// The `[coap]` section.
    pub(crate) config: CoapConfig,
    /// The adapter's counters.
    pub(crate) counters: Arc<Counters>,
    directory: Arc<Directory>,
    rate: Mutex<RateLimit>,
    /// Block1 uploads in progress, by peer and path.
    uploads: Mutex<Assembler<(SocketAddr, Vec<Vec<u8>>)>>,
}

/// A direct answer: no events to submit.
pub(crate) enum Answer {
    /// A status with a diagnostic payload and optional Max-Age.
    Status(ResponseType, &'static str, Option<Duration>),
    /// A status with a diagnostic built from the request.
    Diagnostic(ResponseType, String),
    /// `2.31 Continue` with the Block1 option echoed (RFC 7959 §2.3).
    Continue(Block),
    /// `4.13` with Size1: the largest body taken (RFC 7959 §2.9.3).
    TooLarge(u64),
    /// A reset instead of a response: a non-confirmable request rejected
    /// (RFC 7252 §4.3).
    Reset,
    /// `2.05` with this link-format payload.
    Links(String),
}

impl Answer {
    /// The answer, made from the response prepared for the request.
    pub(crate) fn into_packet(self, response: Packet) -> Packet {
        match self {
            Answer::Status(code, why, max_age) => status(response, code, max_age, why),
            Answer::Diagnostic(code, why) => status(response, code, None, &why),
            Answer::Continue(block) => {
                let mut p = status(response, ResponseType::Continue, None, "");
                p.add_option(CoapOption::Block1, block.encode());
                p
            }
            Answer::TooLarge(limit) => {
                let mut p = status(
                    response,
                    ResponseType::RequestEntityTooLarge,
                    None,
                    &format!("payload too large (max {limit} bytes)"),
                );
                p.add_option(
                    CoapOption::Size1,
                    encode_uint(u32::try_from(limit).unwrap_or(u32::MAX)),
                );
                p
            }
            Answer::Reset => reset(response.header.message_id),
            Answer::Links(links) => {
                let mut p = status(response, ResponseType::Content, None, "");
                p.set_content_format(ContentFormat::ApplicationLinkFormat);
                p.payload = links.into_bytes();
                p
            }
        }
    }
}

impl Router {
    /// A router for `config`; devices are noted in `directory` when their
    /// requests are accepted.
    pub(crate) fn new(
        config: CoapConfig,
        counters: Arc<Counters>,
        directory: Arc<Directory>,
    ) -> Router {
        Router {
            rate: Mutex::new(RateLimit::new(config.rate_per_device)),
            uploads: Mutex::new(Assembler::new(
                MAX_UPLOADS,
                config.max_payload.bytes() as usize,
                config.exchange_lifetime.get(),
            )),
            directory,
            counters,
            config,
        }
    }

    /// Checks options, path, method, device, size and rate; assembles Block1
    /// uploads; decodes the payload. The response to the last block of an
    /// upload gets its Block1 option here.
    pub(crate) fn route(
        &self,
        request: &mut CoapRequest<SocketAddr>,
        origin: &Origin,
    ) -> Result<Vec<Event>, Answer> {
        let peer = origin.peer;
        let c = &self.counters;
        let config = &self.config;
        let confirmable = request.message.header.get_type() == MessageType::Confirmable;
        let segments: Vec<Vec<u8>> = request
            .message
            .get_option(CoapOption::UriPath)
            .map(|list| list.iter().cloned().collect())
            .unwrap_or_default();
        let discovery = segments == [b".well-known".as_slice(), b"core"];
        match option::check_request(&mut request.message, discovery) {
            Ok(ignored) if !ignored.is_empty() => {
                tracing::debug!(peer = %peer, options = ?ignored, "Elective options ignored");
            }
            Ok(_) => {}
            Err(OptionError::Proxy { number }) => {
                c.reject(Rejection::Proxy);
                return Err(Answer::Diagnostic(
                    ResponseType::ProxyingNotSupported,
                    OptionError::Proxy { number }.to_string(),
                ));
            }
            Err(e) => {
                c.reject(Rejection::BadOption);
                return Err(if confirmable {
                    Answer::Diagnostic(ResponseType::BadOption, e.to_string())
                } else {
                    Answer::Reset
                });
            }
        }
        let method = *request.get_method();
        let (device, name) = match path::resource(&segments, &config.path) {
            Ok(Resource::WellKnownCore) if method == RequestType::Get => {
                return Err(Answer::Links(links(config)));
            }
            Ok(Resource::WellKnownCore) => {
                return Err(Answer::Status(
                    ResponseType::MethodNotAllowed,
                    "GET only",
                    None,
                ));
            }
            Ok(Resource::Readings { device, name }) => (device, name),
            Err(PathError::NotFound) => {
                c.reject(Rejection::UnknownPath);
                return Err(Answer::Status(
                    ResponseType::NotFound,
                    "no such resource",
                    None,
                ));
            }
            Err(e) => {
                c.reject(match e {
                    PathError::BadName(_) => Rejection::BadName,
                    _ => Rejection::BadDevice,
                });
                return Err(Answer::Diagnostic(ResponseType::BadRequest, e.to_string()));
            }
        };
        if !matches!(method, RequestType::Post | RequestType::Put) {
            c.reject(Rejection::Method);
            return Err(Answer::Status(
                ResponseType::MethodNotAllowed,
                "POST or PUT readings",
                None,
            ));
        }
        let any_device = config.dtls.as_ref().is_some_and(|d| d.any_device);
        if let Some(identity) = &origin.identity
            && !any_device
            && **identity != *device
        {
            c.reject(Rejection::IdentityMismatch);
            return Err(Answer::Diagnostic(
                ResponseType::Forbidden,
                format!("DTLS identity `{identity}` may not post for device `{device}`"),
            ));
        }
        if !config.allow.is_empty() && !config.allow.contains(&device) {
            c.reject(Rejection::NotAllowed);
            return Err(Answer::Status(
                ResponseType::Forbidden,
                "device not allowed",
                None,
            ));
        }
        if let Some(block) = self.assemble(request, peer, segments)?
            && let Some(response) = request.response.as_mut()
        {
            response
                .message
                .add_option(CoapOption::Block1, block.encode());
        }
        // Counted per whole request: the blocks of one upload are one request.
        let allowed = self
            .rate
            .lock()
            .map(|mut r| r.allow(&device, Instant::now()))
            .unwrap_or(true);
        if !allowed {
            c.reject(Rejection::RateLimited);
            return Err(Answer::Status(
                ResponseType::TooManyRequests,
                "too many requests",
                Some(Duration::from_secs(1)),
            ));
        }
        let payload = &request.message.payload;
        let format = match uint_option(&request.message, CoapOption::ContentFormat) {
            None if payload.first() == Some(&b'{') => Format::Json,
            None => Format::Text,
            Some(number) => match u16::try_from(number).ok().and_then(Format::from_number) {
                Some(f) => f,
                None => {
                    c.reject(Rejection::UnsupportedFormat);
                    return Err(Answer::Diagnostic(
                        ResponseType::UnsupportedContentFormat,
                        format!(
                            "content format {number} is not supported (use 0, 50, 60, 110 or 112)"
                        ),
                    ));
                }
            },
        };
        let now = now_ms();
        match payload::decode(format, payload, &name, now) {
            Ok(samples) => {
                self.directory.heard(&device, peer);
                Ok(payload::to_events(&device, samples, now))
            }
            Err(e) => {
                c.reject(Rejection::Malformed);
                Err(Answer::Diagnostic(ResponseType::BadRequest, e.to_string()))
            }
        }
    }

    /// Checks the payload size and takes a Block1 block (RFC 7959). Answers an
    /// intermediate block with `2.31`; on the last one, replaces the payload by
    /// the whole body and returns the block to echo.
    fn assemble(
        &self,
        request: &mut CoapRequest<SocketAddr>,
        peer: SocketAddr,
        segments: Vec<Vec<u8>>,
    ) -> Result<Option<Block>, Answer> {
        let c = &self.counters;
        let max = self.config.max_payload.bytes();
        let message = &mut request.message;
        // Size1 announces the whole body (RFC 7959 §4): refuse early.
        if uint_option(message, CoapOption::Size1).is_some_and(|size| size > max)
            || message.payload.len() as u64 > max
        {
            c.reject(Rejection::PayloadTooLarge);
            return Err(Answer::TooLarge(max));
        }
        let Some(raw) = message.get_first_option(CoapOption::Block1) else {
            return Ok(None);
        };
        let block = Block::parse(raw).map_err(|e| {
            c.reject(Rejection::Block);
            Answer::Diagnostic(ResponseType::BadRequest, e.to_string())
        })?;
        let now = Instant::now();
        let mut uploads = self
            .uploads
            .lock()
            .map_err(|_| Answer::Status(ResponseType::InternalServerError, "block state", None))?;
        for _ in 0..uploads.expire(now) {
            c.reject(Rejection::BlockExpired);
        }
        match uploads.offer((peer, segments), block, &message.payload, now) {
            Ok(Step::Continue(block)) => Err(Answer::Continue(block)),
            Ok(Step::Complete(body, block)) => {
                message.payload = body;
                Ok(Some(block))
            }
            Err(refused) => Err(match refused {
                block1::Refused::Incomplete => {
                    c.reject(Rejection::BlockIncomplete);
                    Answer::Status(
                        ResponseType::RequestEntityIncomplete,
                        "block out of sequence: start again from block 0",
                        None,
                    )
                }
                block1::Refused::TooLarge => {
                    c.reject(Rejection::PayloadTooLarge);
                    Answer::TooLarge(max)
                }
                block1::Refused::BadSize => {
                    c.reject(Rejection::Block);
                    Answer::Status(
                        ResponseType::BadRequest,
                        "block payload does not match its SZX",
                        None,
                    )
                }
                block1::Refused::Busy => {
                    c.reject(Rejection::BlockBusy);
                    Answer::Status(
                        ResponseType::ServiceUnavailable,
                        "too many uploads, retry later",
                        Some(self.config.retry_after.get()),
                    )
                }
            }),
        }
    }
}

/// The response with `code`, a diagnostic payload (for errors) and Max-Age.
pub(crate) fn status(
    mut response: Packet,
    code: ResponseType,
    max_age: Option<Duration>,
    diagnostic: &str,
) -> Packet {
    response.header.code = MessageClass::Response(code);
    if let Some(age) = max_age {
        let secs = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
        response.clear_option(CoapOption::MaxAge);
        response.add_option(CoapOption::MaxAge, encode_uint(secs));
    }
    if !diagnostic.is_empty() {
        response.payload = diagnostic.as_bytes().to_vec();
    }
    response
}

/// An empty reset for message `message_id` (RFC 7252 §4.2, §4.3).
pub(crate) fn reset(message_id: u16) -> Packet {
    let mut rst = Packet::new();
    rst.header.set_type(MessageType::Reset);
    rst.header.code = MessageClass::Empty;
    rst.header.message_id = message_id;
    rst
}

/// `/.well-known/core` (RFC 6690): the readings collection, and the allowed devices.
fn links(config: &CoapConfig) -> String {
    let formats = "ct=\"0 50 60 110 112\"";
    let mut links = vec![format!(
        "</{}>;rt=\"sluice.readings\";{formats};title=\"POST readings to /{}/<device>\"",
        config.path, config.path
    )];
    for device in &config.allow {
        links.push(format!(
            "</{}/{device}>;rt=\"sluice.readings\";{formats}",
            config.path
        ));
    }
    links.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_core_lists_the_collection_and_allowed_devices() {
        let config = CoapConfig {
            allow: vec!["t1".into()],
            ..CoapConfig::default()
        };
        let l = links(&config);
        assert!(
            l.starts_with("</r>;rt=\"sluice.readings\";ct=\"0 50 60 110 112\""),
            "{l}"
        );
        assert!(
            l.ends_with(",</r/t1>;rt=\"sluice.readings\";ct=\"0 50 60 110 112\""),
            "{l}"
        );
    }
}
