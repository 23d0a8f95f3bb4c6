//! Strict CoAP conformance of the server, with hand-built datagrams against
//! a running gateway: options (RFC 7252 §5.4, §5.10), Block1 uploads
//! (RFC 7959) with 3-byte block numbers, device and name segments (one id
//! rule), SenML packs (RFC 8428); then thousands of mutated requests, after
//! which the gateway still answers and nothing malformed is in the queue.
//! The uplink points at a closed port, so what was ingested stays in the
//! queue to be inspected.

mod support;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use sluice::Runtime;
use sluice_adapter_common::device_id;
use sluice_event::{Event, Value};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;
use support::{config, free_port, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// A runtime with CoAP on a free loopback port, blocks up to 128 KiB.
async fn start(dir: &Path) -> (Runtime, SocketAddr) {
    let extra = "[coap]\nlisten = [\"127.0.0.1:0\"]\nrate_per_device = 1000000\n\
                 max_payload = \"128 KiB\"\nmax_exchanges = 100000\n";
    let runtime = Runtime::start(config(dir, free_port(), "", extra))
        .await
        .expect("start");
    let addr = runtime.udp_addrs("coap")[0];
    (runtime, addr)
}

fn device_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    socket
}

/// Sends `datagram` and returns the first answer, parsed.
fn exchange(socket: &UdpSocket, to: SocketAddr, datagram: &[u8]) -> Packet {
    socket.send_to(datagram, to).expect("send");
    let mut buf = [0u8; 1500];
    let (n, _) = socket
        .recv_from(&mut buf)
        .expect("an answer within the timeout");
    Packet::from_bytes(&buf[..n]).expect("the answer is valid CoAP")
}

/// Every event in the queue of `dir`.
fn queued(dir: &Path) -> Vec<Event> {
    sluice::queue::inspect::peek(&dir.join("queue.db"), 1_000_000)
        .expect("peek")
        .iter()
        .map(|r| Event::decode(&r.event).expect("decodes"))
        .collect()
}

/// `GET /.well-known/core`: answered at once, ingests nothing; its answer
/// tells that what was sent before it has been handled.
fn probe(mid: u16) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = mid;
    p.add_option(CoapOption::UriPath, b".well-known".to_vec());
    p.add_option(CoapOption::UriPath, b"core".to_vec());
    p.to_bytes().expect("encodes")
}

/// What a case expects back.
struct Expect {
    /// `None`: no answer at all (a probe sent after it is answered first).
    kind: Option<MessageType>,
    /// `None` for a reset.
    code: Option<ResponseType>,
    /// Part of the diagnostic payload.
    diagnostic: &'static str,
}

fn ack(code: ResponseType, diagnostic: &'static str) -> Expect {
    Expect {
        kind: Some(MessageType::Acknowledgement),
        code: Some(code),
        diagnostic,
    }
}

/// `header` (header, token and options, hand-built) then the payload marker
/// and `payload`.
fn with_payload(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut d = header.to_vec();
    d.push(0xff); // payload marker
    d.extend_from_slice(payload);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_answers_as_the_rfcs_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, addr) = start(dir.path()).await;
    use ResponseType::*;
    let json = br#"{"t":1}"#;
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "RFC 7252 §5.4.1: an unrecognised critical option in a CON gets 4.02",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x01, // v1 CON TKL 1, POST, MID 0x1001
                    0x01, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                    0xd0, 40, // option 65 (12 + 13 + 40), length 0
                ],
                json,
            ),
            ack(BadOption, "option 65 is not recognised"),
        ),
        (
            "RFC 7252 §5.4.1: an unrecognised critical option in a NON gets a reset",
            with_payload(
                &[
                    0x51, 0x02, 0x10, 0x02, // v1 NON TKL 1, POST, MID 0x1002
                    0x02, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                    0xd0, 40, // option 65, length 0
                ],
                json,
            ),
            Expect {
                kind: Some(MessageType::Reset),
                code: None,
                diagnostic: "",
            },
        ),
        (
            "RFC 7252 §3: a payload marker without a payload is a format error: reset",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x30, // v1 CON TKL 1, POST, MID 0x1030
                    0x30, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                ],
                b"", // the marker, then nothing
            ),
            Expect {
                kind: Some(MessageType::Reset),
                code: None,
                diagnostic: "",
            },
        ),
        (
            "RFC 7252 §3: a message of version 2 is silently ignored",
            with_payload(
                &[
                    0x81, 0x02, 0x10, 0x20, // v2 CON TKL 1, POST, MID 0x1020
                    0x20, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                ],
                json,
            ),
            Expect {
                kind: None,
                code: None,
                diagnostic: "",
            },
        ),
        (
            "RFC 7252 §5.7.2: Proxy-Uri gets 5.05",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x03, // v1 CON TKL 1, POST, MID 0x1003
                    0x03, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                    0xd6, 10, // Proxy-Uri (12 + 13 + 10 = 35), length 6
                    b'c', b'o', b'a', b'p', b':', b'/', // "coap:/"
                ],
                json,
            ),
            ack(ProxyingNotSupported, "option 35 (Proxy-Uri): not a proxy"),
        ),
        (
            "RFC 7252 §5.7.2: Proxy-Scheme gets 5.05",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x04, // v1 CON TKL 1, POST, MID 0x1004
                    0x04, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                    0xd4, 14, // Proxy-Scheme (12 + 13 + 14 = 39), length 4
                    b'c', b'o', b'a', b'p', // "coap"
                ],
                json,
            ),
            ack(ProxyingNotSupported, "option 39 (Proxy-Scheme)"),
        ),
        (
            "RFC 7252 §5.10.8: If-None-Match is refused with 4.02",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x05, // v1 CON TKL 1, POST, MID 0x1005
                    0x05, // token
                    0x50, // If-None-Match (5), length 0
                    0x61, b'r', // Uri-Path (5 + 6 = 11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                ],
                json,
            ),
            ack(BadOption, "option 5 (If-None-Match) is not supported"),
        ),
        (
            "RFC 7252 §5.10.8: If-Match is refused with 4.02",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x06, // v1 CON TKL 1, POST, MID 0x1006
                    0x06, // token
                    0x11, 0xaa, // If-Match (1), length 1: an ETag
                    0xa1, b'r', // Uri-Path (1 + 10 = 11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                ],
                json,
            ),
            ack(BadOption, "option 1 (If-Match) is not supported"),
        ),
        (
            "RFC 7252 §5.4.3: an empty Uri-Host (1-255) is a bad critical option",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x07, // v1 CON TKL 1, POST, MID 0x1007
                    0x07, // token
                    0x30, // Uri-Host (3), length 0
                    0x81, b'r', // Uri-Path (3 + 8 = 11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                ],
                json,
            ),
            ack(BadOption, "length 0 is out of range 1-255"),
        ),
        (
            "Uri-Query is refused with 4.02 rather than dropped",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x08, // v1 CON TKL 1, POST, MID 0x1008
                    0x08, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                    0x33, b'a', b'=', b'1', // Uri-Query (12 + 3 = 15): "a=1"
                ],
                json,
            ),
            ack(BadOption, "option 15 (Uri-Query) is not supported"),
        ),
        (
            "RFC 6690 §4.1: Uri-Query on /.well-known/core is a filter, not refused",
            vec![
                0x41, 0x01, 0x10, 0x21, // v1 CON TKL 1, GET, MID 0x1021
                0x21, // token
                0xbb, b'.', b'w', b'e', b'l', b'l', b'-', b'k', b'n', b'o', b'w',
                b'n', // Uri-Path (11), length 11: ".well-known"
                0x04, b'c', b'o', b'r', b'e', // Uri-Path (+0): "core"
                0x45, b'r', b't', b'=', b'x', b'y', // Uri-Query (11 + 4 = 15): "rt=xy"
            ],
            ack(Content, "sluice.readings"),
        ),
        (
            "RFC 7252 §5.4.5: a repeated Block1 is a bad critical option",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x09, // v1 CON TKL 1, POST, MID 0x1009
                    0x09, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                    0xd1, 2, 0x06, // Block1 (12 + 13 + 2 = 27): NUM 0, M 0, SZX 6
                    0x01, 0x06, // Block1 again (+0)
                ],
                json,
            ),
            ack(BadOption, "option 27 (Block1) is repeated"),
        ),
        (
            "RFC 7959 §2.2: a 4-byte Block1 is a bad critical option",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x0a, // v1 CON TKL 1, POST, MID 0x100a
                    0x0a, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                    0xd4, 2, 0, 0, 0, 0x06, // Block1 (27), length 4
                ],
                json,
            ),
            ack(
                BadOption,
                "option 27 (Block1): length 4 is out of range 0-3",
            ),
        ),
        (
            "RFC 7252 §5.4.3: a 3-byte Content-Format (0-2) is an elective option ignored",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x0b, // v1 CON TKL 1, POST, MID 0x100b
                    0x0b, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x13, 0, 0, 112, // Content-Format (12), length 3: ignored
                ],
                json, // read as JSON: no (valid) Content-Format, starts with `{`
            ),
            ack(Changed, ""),
        ),
        (
            "RFC 7252 §5.4.1: an unrecognised elective option is ignored",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x0c, // v1 CON TKL 1, POST, MID 0x100c
                    0x0c, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                    0xe0, 0x06, 0xe7, // option 2048 (12 + 269 + 0x06e7), length 0
                ],
                json,
            ),
            ack(Changed, ""),
        ),
        (
            "RFC 7959 §2.2: Block1 SZX 7 is reserved: 4.00",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x0d, // v1 CON TKL 1, POST, MID 0x100d
                    0x0d, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                    0xd1, 2, 0x0f, // Block1 (27): NUM 0, M 1, SZX 7
                ],
                json,
            ),
            ack(BadRequest, "SZX 7 is reserved"),
        ),
        (
            "RFC 7959 §2.3: a block that continues no upload gets 4.08",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x0e, // v1 CON TKL 1, POST, MID 0x100e
                    0x0e, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                    0xd1, 2, 0x16, // Block1 (27): NUM 1, M 0, SZX 6
                ],
                json,
            ),
            ack(RequestEntityIncomplete, "block out of sequence"),
        ),
        (
            "RFC 7959 §4: Size1 above max_payload gets 4.13 with Size1",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x0f, // v1 CON TKL 1, POST, MID 0x100f
                    0x0f, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 50, // Content-Format (12): 50
                    0xd1, 2, 0x08, // Block1 (27): NUM 0, M 1, SZX 0 (16 bytes)
                    0xd3, 20, 0x03, 0x0d, 0x40, // Size1 (27 + 13 + 20 = 60): 200000
                ],
                b"0123456789abcdef", // one block of 16 bytes
            ),
            ack(
                RequestEntityTooLarge,
                "payload too large (max 131072 bytes)",
            ),
        ),
        (
            "A percent-encoded slash in the device segment gets 4.00",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x10, // v1 CON TKL 1, POST, MID 0x1010
                    0x10, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x03, b'a', b'/', b'b', // Uri-Path (+0): "a/b", one segment
                    0x11, 50, // Content-Format (12): 50
                ],
                json,
            ),
            ack(BadRequest, "device id contains `/`"),
        ),
        (
            "A percent-encoded slash in the name segment gets 4.00",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x11, // v1 CON TKL 1, POST, MID 0x1011
                    0x11, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x03, b'x', b'/', b'y', // Uri-Path (+0): "x/y", one segment
                    0x10, // Content-Format (12): 0, text
                ],
                b"1",
            ),
            ack(BadRequest, "reading name contains `/`"),
        ),
        (
            "A wildcard in the device segment gets 4.00",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x12, // v1 CON TKL 1, POST, MID 0x1012
                    0x12, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x01, b'+', // Uri-Path (+0): "+"
                    0x11, 50, // Content-Format (12): 50
                ],
                json,
            ),
            ack(BadRequest, "device id contains `+` or `#`"),
        ),
        (
            "A control character in the device segment gets 4.00",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x13, // v1 CON TKL 1, POST, MID 0x1013
                    0x13, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x03, b'a', 0x00, b'b', // Uri-Path (+0): "a\0b"
                    0x11, 50, // Content-Format (12): 50
                ],
                json,
            ),
            ack(BadRequest, "device id contains a control character"),
        ),
        (
            "RFC 8428 §4.2: two value fields in a record get 4.00 saying which",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x14, // v1 CON TKL 1, POST, MID 0x1014
                    0x14, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 110, // Content-Format (12): 110, SenML JSON
                ],
                br#"[{"n":"a","v":1},{"n":"b","v":1,"vs":"x"}]"#,
            ),
            ack(BadRequest, "record 2: two value fields (v, vs)"),
        ),
        (
            "RFC 8428 §4.4: a version above 10 gets 4.00",
            with_payload(
                &[
                    0x41, 0x02, 0x10, 0x15, // v1 CON TKL 1, POST, MID 0x1015
                    0x15, // token
                    0xb1, b'r', // Uri-Path (11): "r"
                    0x04, b'o', b'p', b't', b's', // Uri-Path (+0): "opts"
                    0x11, 110, // Content-Format (12): 110, SenML JSON
                ],
                br#"[{"bver":11,"n":"a","v":1}]"#,
            ),
            ack(BadRequest, "record 1: unsupported SenML version (max 10)"),
        ),
    ];
    let cases = std::sync::Arc::new(cases);
    let shared = cases.clone();
    let answers = tokio::task::spawn_blocking(move || {
        let socket = device_socket();
        shared
            .iter()
            .enumerate()
            .map(|(i, (_, datagram, expect))| {
                if expect.kind.is_some() {
                    return exchange(&socket, addr, datagram);
                }
                socket.send_to(datagram, addr).expect("send");
                exchange(&socket, addr, &probe(0x7000 + i as u16))
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("device");
    for (i, ((name, datagram, expect), answer)) in cases.iter().zip(&answers).enumerate() {
        let Some(kind) = expect.kind else {
            assert_eq!(
                answer.header.message_id,
                0x7000 + i as u16,
                "{name}: {answer:?}"
            );
            continue;
        };
        let request = Packet::from_bytes(datagram).expect("the case is valid CoAP");
        assert_eq!(answer.header.get_type(), kind, "{name}: {answer:?}");
        assert_eq!(
            answer.header.message_id, request.header.message_id,
            "{name}"
        );
        match expect.code {
            Some(code) => {
                assert_eq!(answer.header.code, MessageClass::Response(code), "{name}");
                assert_eq!(answer.get_token(), request.get_token(), "{name}");
            }
            None => assert_eq!(answer.header.code, MessageClass::Empty, "{name}"),
        }
        let diagnostic = String::from_utf8_lossy(&answer.payload);
        assert!(
            diagnostic.contains(expect.diagnostic),
            "{name}: diagnostic {diagnostic:?}"
        );
        if expect.code == Some(ResponseType::RequestEntityTooLarge) {
            assert_eq!(
                answer.get_first_option(CoapOption::Size1),
                Some(&vec![0x02, 0x00, 0x00]),
                "{name}: Size1 is the limit, 128 KiB"
            );
        }
    }
    let c = runtime.metrics().snapshot().adapters["coap"].clone();
    for (reason, count) in [
        ("receive/malformed-datagram", 2),
        ("receive/bad-option", 8),
        ("route/proxy", 2),
        ("route/bad-device", 3),
        ("route/bad-name", 1),
        ("decode/block", 1),
        ("decode/block-incomplete", 1),
        ("decode/too-large", 1),
        ("decode/malformed", 2),
    ] {
        assert_eq!(c.rejected.get(reason), Some(&count), "{reason}: {c:?}");
    }
    wait_until(WAIT, "two records queued", || queued(dir.path()).len() == 2).await;
    assert!(
        queued(dir.path()).iter().all(|e| e.device == "opts"),
        "only the two accepted requests are ingested"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8428_a_record_without_time_is_taken_at_reception() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, addr) = start(dir.path()).await;
    let before = sluice_adapter_common::clock::now_ms();
    let answer = tokio::task::spawn_blocking(move || {
        let datagram = with_payload(
            &[
                0x41, 0x02, 0x20, 0x01, // v1 CON TKL 1, POST, MID 0x2001
                0x01, // token
                0xb1, b'r', // Uri-Path (11): "r"
                0x03, b'n', b'o', b'w', // Uri-Path (+0): "now"
                0x11, 110, // Content-Format (12): 110, SenML JSON
            ],
            br#"[{"n":"a","v":1}]"#,
        );
        exchange(&device_socket(), addr, &datagram)
    })
    .await
    .expect("device");
    let after = sluice_adapter_common::clock::now_ms();
    assert_eq!(
        answer.header.code,
        MessageClass::Response(ResponseType::Changed)
    );
    wait_until(WAIT, "the record queued", || queued(dir.path()).len() == 1).await;
    let event = &queued(dir.path())[0];
    let time = event.device_time_ms.expect("a time");
    assert!(
        (before..=after).contains(&time),
        "{before} <= {time} <= {after}"
    );
    runtime.shutdown().await;
}

/// A request built with coap-lite (for payloads too long to write by hand).
fn request(
    mid: u16,
    path: &[&str],
    format: u16,
    options: &[(CoapOption, Vec<u8>)],
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = mid;
    p.set_token(mid.to_be_bytes().to_vec());
    for segment in path {
        p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    p.add_option(
        CoapOption::ContentFormat,
        sluice_coap::option::encode_uint(u32::from(format)),
    );
    for (option, value) in options {
        p.add_option(*option, value.clone());
    }
    p.payload = payload.to_vec();
    p.to_bytes().expect("encodes")
}

/// A SenML JSON pack of `records` text readings, about 80 bytes each.
fn big_pack(records: usize) -> Vec<u8> {
    let records: Vec<String> = (0..records)
        .map(|i| format!(r#"{{"n":"s-{i:04}","vs":"{}"}}"#, "x".repeat(60)))
        .collect();
    format!("[{}]", records.join(",")).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7959_an_upload_in_16_byte_blocks_needs_3_byte_block_numbers() {
    use sluice_coap::block1::Block;
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, addr) = start(dir.path()).await;
    let pack = big_pack(900);
    let blocks = pack.len().div_ceil(16);
    assert!(blocks > 4096, "block numbers beyond 12 bits: {blocks}");
    let (continues, last, skipped) = tokio::task::spawn_blocking(move || {
        let socket = device_socket();
        let mut continues = 0;
        let mut last = None;
        for (num, chunk) in pack.chunks(16).enumerate() {
            let block = Block {
                num: num as u32,
                more: num + 1 < blocks,
                szx: 0,
            };
            let mid = (num % 60_000) as u16;
            let d = request(
                mid,
                &["r", "blocks"],
                110,
                &[(CoapOption::Block1, block.encode())],
                chunk,
            );
            let answer = exchange(&socket, addr, &d);
            assert_eq!(answer.header.message_id, mid);
            let echoed = answer
                .get_first_option(CoapOption::Block1)
                .map(|raw| Block::parse(raw).expect("a valid Block1"));
            assert_eq!(echoed, Some(block), "block {num}: Block1 echoed");
            if block.more {
                assert_eq!(
                    answer.header.code,
                    MessageClass::Response(ResponseType::Continue),
                    "block {num}"
                );
                continues += 1;
            } else {
                last = Some(answer.header.code);
            }
        }
        // A second upload that skips a block.
        let first = Block {
            num: 0,
            more: true,
            szx: 0,
        };
        let third = Block {
            num: 2,
            more: true,
            szx: 0,
        };
        let a = exchange(
            &socket,
            addr,
            &request(
                60_001,
                &["r", "skips"],
                110,
                &[(CoapOption::Block1, first.encode())],
                &[b' '; 16],
            ),
        );
        assert_eq!(
            a.header.code,
            MessageClass::Response(ResponseType::Continue)
        );
        let skipped = exchange(
            &socket,
            addr,
            &request(
                60_002,
                &["r", "skips"],
                110,
                &[(CoapOption::Block1, third.encode())],
                &[b' '; 16],
            ),
        );
        (continues, last, skipped.header.code)
    })
    .await
    .expect("device");
    assert_eq!(continues, blocks - 1);
    assert_eq!(last, Some(MessageClass::Response(ResponseType::Changed)));
    assert_eq!(
        skipped,
        MessageClass::Response(ResponseType::RequestEntityIncomplete)
    );
    wait_until(WAIT, "the upload queued", || queued(dir.path()).len() == 1).await;
    let event = &queued(dir.path())[0];
    assert_eq!(event.device, "blocks");
    assert_eq!(event.readings.len(), 900);
    assert_eq!(event.readings[899].name, "s-0899");
    runtime.shutdown().await;
}

/// A deterministic generator (xorshift64*), so a failing run can be replayed.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One to three mutations of `seed`.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut d = seed.to_vec();
        for _ in 0..=self.below(3) {
            let at = self.below(d.len());
            match self.below(7) {
                // Flip some bits of one byte.
                0 if !d.is_empty() => d[at] ^= 1 << self.below(8),
                // A random byte.
                1 if !d.is_empty() => d[at] = self.next() as u8,
                // Truncate.
                2 => d.truncate(at),
                // Duplicate a run of bytes (options repeated, lengths off).
                3 if !d.is_empty() => {
                    let len = 1 + self.below(8).min(d.len() - at - 1);
                    let run: Vec<u8> = d[at..at + len].to_vec();
                    d.splice(at..at, run);
                }
                // Change an option's delta or length nibble (after the header).
                4 if d.len() > 5 => {
                    let at = 4 + self.below(d.len() - 4);
                    let nibble = (self.next() as u8) & 0x0f;
                    d[at] = if self.below(2) == 0 {
                        (d[at] & 0x0f) | (nibble << 4)
                    } else {
                        (d[at] & 0xf0) | nibble
                    };
                }
                // Append garbage.
                5 => d.extend((0..self.below(32)).map(|_| self.next() as u8)),
                // Delete a byte.
                _ if !d.is_empty() => {
                    d.remove(at);
                }
                _ => {}
            }
        }
        d
    }
}

/// Whether an event is what the adapter may queue: a device id that
/// follows the rule, the subject `coap/<device>`, named readings with
/// usable values.
fn well_formed(e: &Event) -> bool {
    device_id::check(&e.device).is_ok()
        && e.subject == format!("coap/{}", e.device)
        && !e.readings.is_empty()
        && e.readings.iter().all(|r| {
            !r.name.is_empty()
                && !r.name.chars().any(char::is_control)
                && match &r.value {
                    Value::Number(n) => n.is_finite(),
                    _ => true,
                }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_mutated_requests_leave_the_gateway_up_and_the_queue_clean() {
    const ROUNDS: u16 = 5000;
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, addr) = start(dir.path()).await;
    let senml_cbor = {
        use ciborium::Value as C;
        let record = C::Map(vec![
            (C::Integer(0.into()), C::Text("temp".into())), // n
            (C::Integer(1.into()), C::Text("Cel".into())),  // u
            (C::Integer(2.into()), C::Float(21.5)),         // v
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&C::Array(vec![record]), &mut out).expect("encodes");
        out
    };
    let block = |num, more| sluice_coap::block1::Block { num, more, szx: 0 }.encode();
    let seeds = [
        request(
            0,
            &["r", "fuzz-json"],
            50,
            &[],
            br#"{"t":21.5,"door":false}"#,
        ),
        request(
            0,
            &["r", "fuzz-senml"],
            110,
            &[],
            br#"[{"bn":"f:","n":"t","u":"Cel","v":1,"t":-1}]"#,
        ),
        request(0, &["r", "fuzz-cbor"], 112, &[], &senml_cbor),
        request(0, &["r", "fuzz-text", "level"], 0, &[], b"42.5"),
        request(
            0,
            &["r", "fuzz-block"],
            50,
            &[(CoapOption::Block1, block(0, true))],
            b"{\"t\":1,\"u\":2,\"v\"",
        ),
        request(
            0,
            &["r", "fuzz-block"],
            50,
            &[(CoapOption::Block1, block(1, false))],
            b":3}",
        ),
    ];
    let (answers, sent, final_answer) = tokio::task::spawn_blocking(move || {
        let socket = device_socket();
        let mut mutator = Mutator(0x5eed_c0a9_0000_0001);
        // Every answer that came back, and the message ids sent.
        let mut answers: Vec<Vec<u8>> = Vec::new();
        let mut sent = std::collections::HashSet::new();
        let mut buf = [0u8; 2048];
        for round in 0..ROUNDS {
            let seed = &seeds[round as usize % seeds.len()];
            let mut d = mutator.mutate(seed);
            // Unique message ids, so no mutation is taken for a retransmission
            // and every answer can be matched.
            if d.len() >= 4 {
                d[2..4].copy_from_slice(&(round + 1).to_be_bytes());
                sent.insert(round + 1);
            }
            socket.send_to(&d, addr).expect("send");
            // A probe after each: its answer means the mutation was handled
            // (answers for ingested requests may still come later).
            let probe_mid = 30_000 + round;
            socket.send_to(&probe(probe_mid), addr).expect("send");
            loop {
                let (n, _) = socket.recv_from(&mut buf).expect("the probe is answered");
                let bytes = buf[..n].to_vec();
                if Packet::from_bytes(&bytes).is_ok_and(|p| p.header.message_id == probe_mid) {
                    break;
                }
                answers.push(bytes);
            }
        }
        socket
            .send_to(
                &request(65_000, &["r", "after-fuzz"], 50, &[], br#"{"t":2}"#),
                addr,
            )
            .expect("send");
        let last = loop {
            let (n, _) = socket
                .recv_from(&mut buf)
                .expect("the last request is answered");
            match Packet::from_bytes(&buf[..n]) {
                Ok(p) if p.header.message_id == 65_000 => break p,
                _ => answers.push(buf[..n].to_vec()),
            }
        };
        (answers, sent, last)
    })
    .await
    .expect("device");
    for bytes in &answers {
        let answer = Packet::from_bytes(bytes)
            .unwrap_or_else(|e| panic!("an answer that is no CoAP ({e:?}): {bytes:02x?}"));
        assert!(
            sent.contains(&answer.header.message_id),
            "an answer to no request: {answer:?}"
        );
        match answer.header.get_type() {
            // RFC 7252 §4.2: an empty message is code 0.00 and nothing else.
            MessageType::Reset => assert!(
                answer.header.code == MessageClass::Empty
                    && answer.get_token().is_empty()
                    && answer.payload.is_empty(),
                "{answer:?}"
            ),
            _ => assert!(
                matches!(answer.header.code, MessageClass::Response(_)),
                "{answer:?}"
            ),
        }
    }
    assert!(
        answers.len() > 500,
        "many mutations are still requests: {}",
        answers.len()
    );
    assert_eq!(
        final_answer.header.code,
        MessageClass::Response(ResponseType::Changed),
        "the gateway still ingests"
    );
    wait_until(WAIT, "the last request queued", || {
        queued(dir.path()).iter().any(|e| e.device == "after-fuzz")
    })
    .await;
    let events = queued(dir.path());
    let bad: Vec<&Event> = events.iter().filter(|e| !well_formed(e)).collect();
    assert!(bad.is_empty(), "malformed events queued: {bad:#?}");
    let c = runtime.metrics().snapshot().adapters["coap"].clone();
    // The mutations reached every layer, not just the datagram parser.
    for reason in [
        "receive/malformed-datagram",
        "receive/bad-option",
        "route/bad-device",
        "route/unknown-path",
        "decode/malformed",
        "decode/block",
    ] {
        assert!(
            c.rejected.get(reason).is_some_and(|n| *n > 0),
            "{reason}: {c:?}"
        );
    }
    assert!(c.messages_in >= u64::from(ROUNDS), "{c:?}");
    runtime.shutdown().await;
}

/// aiocoap's client (Python API): POSTs `payload` as SenML JSON to `uri`,
/// block-wise when it is larger than one block; prints the response code.
const AIOCOAP_POST: &str = r#"
import asyncio, sys
from aiocoap import Context, Message, POST
async def main():
    ctx = await Context.create_client_context()
    payload = sys.stdin.buffer.read()
    req = Message(code=POST, uri=sys.argv[1], payload=payload, content_format=110)
    res = await asyncio.wait_for(ctx.request(req).response, 10)
    print(res.code.dotted)
    await ctx.shutdown()
asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7959_aiocoap_uploads_block_wise() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, addr) = start(dir.path()).await;
    let pack = big_pack(100);
    assert!(pack.len() > 4 * 1024, "several of aiocoap's 1 KiB blocks");
    let code = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("python3")
            .args(["-c", AIOCOAP_POST, &format!("coap://{addr}/r/aio")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 with aiocoap (pip install aiocoap)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&pack)
            .expect("write");
        let out = child.wait_with_output().expect("aiocoap ran");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
    .await
    .expect("client");
    assert_eq!(code, "2.04");
    wait_until(WAIT, "the upload queued", || queued(dir.path()).len() == 1).await;
    assert_eq!(queued(dir.path())[0].readings.len(), 100);
    runtime.shutdown().await;
}
