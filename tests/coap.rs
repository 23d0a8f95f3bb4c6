//! The CoAP adapter against real devices: libcoap's `coap-client` posting
//! readings in every supported format, block-wise uploads, bad input, a
//! retransmitted confirmable request and random datagrams; readings followed
//! through the queue to a real mosquitto.

mod support;

use coap_lite::{MessageClass, MessageType, Packet};
use sluice::Runtime;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;
use support::coap::{self, con_post, post};
use support::{Broker, Collector, config, free_port, wait_until};

const WAIT: Duration = Duration::from_secs(20);

fn coap_section(extra: &str) -> String {
    format!("[coap]\nlisten = [\"127.0.0.1:0\"]\n{extra}\n")
}

/// A runtime with CoAP on a free loopback port; the uplink goes to `port`.
async fn start(dir: &std::path::Path, port: u16, extra: &str) -> (Runtime, SocketAddr) {
    let runtime = Runtime::start(config(dir, port, "", extra))
        .await
        .expect("start");
    let addr = runtime.udp_addrs("coap")[0];
    (runtime, addr)
}

fn record_of<'a>(records: &'a [serde_json::Value], device: &str) -> &'a serde_json::Value {
    records
        .iter()
        .find(|r| r["device"] == device)
        .unwrap_or_else(|| panic!("no record from {device} in {records:#?}"))
}

fn value(record: &serde_json::Value, name: &str) -> serde_json::Value {
    typed(record, name)["value"].clone()
}

/// A reading as `{"type", "value"}`.
fn typed(record: &serde_json::Value, name: &str) -> serde_json::Value {
    record["readings"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["name"] == name))
        .map(|x| serde_json::json!({"type": x["type"], "value": x["value"]}))
        .unwrap_or_else(|| panic!("no reading {name} in {record}"))
}

fn senml_cbor(records: &[(&str, f64)], base_name: &str) -> Vec<u8> {
    use ciborium::Value as V;
    let pack: Vec<V> = records
        .iter()
        .enumerate()
        .map(|(i, (n, v))| {
            let mut m = vec![
                (V::Integer(0.into()), V::Text((*n).into())),
                (V::Integer(2.into()), V::Float(*v)),
            ];
            if i == 0 {
                m.push((V::Integer((-2).into()), V::Text(base_name.into())));
            }
            V::Map(m)
        })
        .collect();
    let mut out = Vec::new();
    ciborium::into_writer(&V::Array(pack), &mut out).expect("encode");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_devices_send_in_every_format_is_what_the_broker_receives() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, addr) = start(dir.path(), broker.port, &coap_section("")).await;

    let cbor_file = dir.path().join("pack.cbor");
    std::fs::write(
        &cbor_file,
        senml_cbor(
            &[("voltage", 120.1), ("current", 1.2)],
            "urn:dev:ow:10e2073a01080063:",
        ),
    )
    .expect("write");
    let answers = tokio::task::spawn_blocking(move || {
        vec![
            post(addr, "json-1", 50, r#"{"temperature": 21.5, "humidity": 40, "door_open": false}"#),
            coap::request(addr, "r/senml-2", &["-N", "-m", "post", "-t", "110", "-e", r#"[{"bn":"urn:dev:mac:0024befffe804ff1:","bt":1.7640e9,"n":"temp","u":"Cel","v":22.5},{"n":"hum","u":"%25RH","v":51},{"n":"label","vs":"cafe"},{"n":"blob","vd":"yv4"}]"#]),
            coap::request(addr, "r/cbor-3", &["-m", "put", "-t", "112", "-f", &cbor_file.display().to_string()]),
            coap::request(addr, "r/text-4/level", &["-m", "post", "-t", "0", "-e", "42.25"]),
        ]
    })
    .await
    .expect("client");
    for a in &answers {
        assert_eq!(a.code, "2.04", "{a:?}");
    }
    assert_eq!(answers[0].kind, "ACK", "a CON gets a piggybacked ACK");
    assert_eq!(answers[1].kind, "NON", "a NON gets a NON response, no ACK");

    wait_until(WAIT, "four records upstream", || collector.unique() == 4).await;
    let records = collector.received.lock().expect("lock").records.clone();
    let json = record_of(&records, "json-1");
    assert_eq!(json["subject"], "coap/json-1");
    assert_eq!(value(json, "temperature"), 21.5);
    assert_eq!(value(json, "humidity"), 40.0);
    assert_eq!(value(json, "door_open"), false);
    let senml = record_of(&records, "senml-2");
    assert_eq!(value(senml, "temp"), 22.5);
    assert_eq!(value(senml, "hum"), 51.0);
    // `vs` and `vd` look alike on the wire (hex); the type tells them apart.
    let (text, bytes) = (typed(senml, "label"), typed(senml, "blob"));
    assert_eq!(text, serde_json::json!({"type": "text", "value": "cafe"}));
    assert_eq!(bytes, serde_json::json!({"type": "bytes", "value": "cafe"}));
    assert_eq!(typed(json, "door_open")["type"], "bool");
    assert_eq!(typed(senml, "temp")["type"], "number");
    assert_eq!(senml["device_time_ms"], 1_764_000_000_000i64);
    assert_eq!(
        senml["meta"]["senml_bn"],
        serde_json::json!({"type": "text", "value": "urn:dev:mac:0024befffe804ff1:"})
    );
    let cbor = record_of(&records, "cbor-3");
    assert_eq!(value(cbor, "voltage"), 120.1);
    assert_eq!(value(cbor, "current"), 1.2);
    assert_eq!(value(record_of(&records, "text-4"), "level"), 42.25);
    let c = &runtime.metrics().snapshot().adapters["coap"];
    assert_eq!((c.messages_in, c.events_accepted), (4, 4));
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_senml_pack_arrives_block_wise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, addr) = start(dir.path(), free_port(), &coap_section("")).await;
    let pack: Vec<String> = (0..80)
        .map(|i| format!(r#"{{"n":"sensor-{i:02}","u":"Cel","v":{i}.5}}"#))
        .collect();
    let payload = format!("[{}]", pack.join(","));
    assert!(payload.len() > 2000, "needs several blocks");
    let file = dir.path().join("pack.json");
    std::fs::write(&file, &payload).expect("write");
    let answer = tokio::task::spawn_blocking(move || {
        coap::request(
            addr,
            "r/big",
            &[
                "-m",
                "post",
                "-t",
                "110",
                "-b",
                "64",
                "-f",
                &file.display().to_string(),
            ],
        )
    })
    .await
    .expect("client");
    assert_eq!(answer.code, "2.04", "{answer:?}");
    let m = runtime.metrics().snapshot();
    assert_eq!(
        m.queue_accepted, 1,
        "one event with every reading of the pack"
    );
    let peek = sluice::queue::inspect::peek(&dir.path().join("queue.db"), 1).expect("peek");
    let event = sluice_event::Event::decode(&peek[0].event).expect("decodes");
    assert_eq!(event.readings.len(), 80);
    assert_eq!(event.number("sensor-79"), Some(79.5));
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_answers_and_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = coap_section("allow = [\"ok\", \"busy\"]\nrate_per_device = 2");
    let (runtime, addr) = start(dir.path(), free_port(), &extra).await;
    let answers = tokio::task::spawn_blocking(move || {
        vec![
            post(addr, "ok", 50, r#"{"temperature": 21.5"#),
            post(addr, "ok", 41, "<x/>"),
            coap::request(addr, "nowhere", &["-m", "post", "-t", "0", "-e", "1"]),
            coap::request(addr, "r/ok", &["-m", "get"]),
            post(addr, "stranger", 0, "1"),
            post(addr, "busy", 0, "1"),
            post(addr, "busy", 0, "2"),
            post(addr, "busy", 0, "3"),
        ]
    })
    .await
    .expect("client");
    let codes: Vec<&str> = answers.iter().map(|a| a.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "4.00", "4.15", "4.04", "4.05", "4.03", "2.04", "2.04", "4.29"
        ],
        "{answers:#?}"
    );
    assert!(
        answers[0].line.contains("EOF while parsing") || answers[0].line.contains("JSON"),
        "a diagnostic says why: {}",
        answers[0].line
    );
    assert!(
        answers[1]
            .line
            .contains("content format 41 is not supported"),
        "{}",
        answers[1].line
    );
    let c = runtime.metrics().snapshot().adapters["coap"].clone();
    for reason in [
        "decode/malformed",
        "decode/unsupported-format",
        "route/unknown-path",
        "route/method",
        "route/not-allowed",
        "route/rate-limited",
    ] {
        assert_eq!(c.rejected.get(reason), Some(&1), "{reason}: {c:?}");
    }
    assert_eq!(c.events_accepted, 2);
    runtime.shutdown().await;
}

fn exchange(socket: &UdpSocket, to: SocketAddr, datagram: &[u8]) -> Vec<u8> {
    socket.send_to(datagram, to).expect("send");
    let mut buf = [0u8; 1500];
    let (n, _) = socket
        .recv_from(&mut buf)
        .expect("an answer within the timeout");
    buf[..n].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_request_is_ingested_once_and_answered_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, addr) = start(dir.path(), free_port(), &coap_section("")).await;
    let (first, second) = tokio::task::spawn_blocking(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let request = con_post(0x1234, "retry", br#"{"n": 1}"#);
        (
            exchange(&socket, addr, &request),
            exchange(&socket, addr, &request),
        )
    })
    .await
    .expect("device");
    assert_eq!(first, second, "the retransmission gets the very same ACK");
    let ack = Packet::from_bytes(&first).expect("valid");
    assert_eq!(ack.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(ack.header.message_id, 0x1234);
    let m = runtime.metrics().snapshot();
    assert_eq!(m.queue_accepted, 1, "ingested once");
    assert_eq!(
        m.adapters["coap"].rejected.get("exchange/duplicate"),
        Some(&1)
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_truncated_datagrams_never_stall_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, addr) = start(
        dir.path(),
        free_port(),
        &coap_section("rate_per_device = 100000"),
    )
    .await;
    let answer = tokio::task::spawn_blocking(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let valid = con_post(1, "fuzz", br#"{"t": 1}"#);
        let mut x: u32 = 0x9e37_79b9;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for i in 0..3000u32 {
            let datagram: Vec<u8> = match i % 3 {
                // Truncated valid requests (their message ids differ, so none is a retransmission).
                0 => {
                    let mut d = con_post(2 + i as u16, "fuzz", br#"{"t": 1}"#);
                    d.truncate(next() as usize % d.len());
                    d
                }
                // A valid header followed by random bytes.
                1 => valid[..4]
                    .iter()
                    .copied()
                    .chain((0..next() % 64).map(|_| next() as u8))
                    .collect(),
                _ => (0..next() % 200).map(|_| next() as u8).collect(),
            };
            socket.send_to(&datagram, addr).expect("send");
        }
        // Answers to the odd random datagram that happened to be a request are drained.
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut buf = [0u8; 1500];
        while socket.recv_from(&mut buf).is_ok() {}
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        exchange(&socket, addr, &con_post(60_000, "fuzz", br#"{"t": 2}"#))
    })
    .await
    .expect("device");
    let ack = Packet::from_bytes(&answer).expect("valid");
    assert_eq!(ack.header.message_id, 60_000);
    assert_eq!(
        ack.header.code,
        MessageClass::Response(coap_lite::ResponseType::Changed)
    );
    let c = runtime.metrics().snapshot().adapters["coap"].clone();
    // UDP may drop some of a burst; what arrived was read and judged.
    assert!(c.messages_in > 1000, "{c:?}");
    assert!(
        c.rejected
            .get("receive/malformed-datagram")
            .copied()
            .unwrap_or(0)
            > 500,
        "{c:?}"
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_5_03_with_max_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "[[queue.streams]]\nname = \"small\"\nsubjects = [\"#\"]\nmax_records = 2\noverflow = \"reject_new\"\n{}",
        coap_section("")
    );
    let (runtime, addr) = start(dir.path(), free_port(), &extra).await;
    let answers = tokio::task::spawn_blocking(move || {
        (0..3)
            .map(|i| post(addr, "d", 0, &i.to_string()))
            .collect::<Vec<_>>()
    })
    .await
    .expect("client");
    assert_eq!(answers[1].code, "2.04");
    assert_eq!(answers[2].code, "5.03", "{answers:?}");
    assert!(answers[2].line.contains("Max-Age:5"), "{}", answers[2].line);
    assert_eq!(
        runtime.metrics().snapshot().adapters["coap"].events_refused,
        1
    );
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downlink_through_the_runtime_reaches_a_device_where_it_last_posted_from() {
    use sluice_adapter_common::downlink::{Answer, Downlink, DownlinkError, Value, Verb};
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, addr) = start(dir.path(), free_port(), &coap_section("")).await;
    let device = UdpSocket::bind("127.0.0.1:0").expect("bind");
    device
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");

    // Before the device has posted, the gateway does not know where it is.
    let led = Downlink::new("lamp", "led", Verb::Set, Value::Bool(true));
    assert_eq!(
        runtime.downlink("coap", led.clone()).await,
        Err(DownlinkError::UnknownDevice("lamp".into()))
    );
    assert_eq!(
        runtime.downlink("lorawan", led.clone()).await,
        Err(DownlinkError::NoAdapter("lorawan".into()))
    );

    let ack = exchange(&device, addr, &con_post(7, "lamp", br#"{"on": 0}"#));
    let ack = Packet::from_bytes(&ack).expect("valid");
    assert_eq!(
        ack.header.code,
        MessageClass::Response(coap_lite::ResponseType::Changed)
    );

    // The device answers the gateway's confirmable PUT with 2.04 and a payload.
    let answering = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 1500];
        let (n, from) = device.recv_from(&mut buf).expect("the downlink");
        let request = Packet::from_bytes(&buf[..n]).expect("valid request");
        let mut response = Packet::new();
        response.header.set_version(1);
        response.header.set_type(MessageType::Acknowledgement);
        response.header.code = MessageClass::Response(coap_lite::ResponseType::Changed);
        response.header.message_id = request.header.message_id;
        response.set_token(request.get_token().to_vec());
        response.payload = b"on".to_vec();
        device
            .send_to(&response.to_bytes().expect("encode"), from)
            .expect("answer");
        request
    });
    let answer = runtime.downlink("coap", led).await;
    let request = answering.await.expect("device");
    assert_eq!(
        answer,
        Ok(Answer {
            status: "2.04".into(),
            payload: b"on".to_vec()
        })
    );
    assert_eq!(request.header.get_type(), MessageType::Confirmable);
    assert_eq!(
        request.header.code,
        MessageClass::Request(coap_lite::RequestType::Put)
    );
    let path: Vec<Vec<u8>> = request
        .get_option(coap_lite::CoapOption::UriPath)
        .map(|segments| segments.iter().cloned().collect())
        .unwrap_or_default();
    assert_eq!(path, [b"led".to_vec()]);
    assert_eq!(request.payload, b"true");
    runtime.shutdown().await;
}
