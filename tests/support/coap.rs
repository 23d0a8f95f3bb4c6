//! libcoap's `coap-client` as a CoAP device, and a raw UDP device for what
//! no client does on purpose (retransmissions, garbage).

use std::net::SocketAddr;
use std::process::Command;

/// The `coap-client` binary of Debian's libcoap3-bin (without DTLS).
const CLIENT: &str = "coap-client-notls";

/// What `coap-client -v 6` saw: the response code (`2.04`) and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Response code as libcoap prints it, e.g. `2.04`, `4.00`.
    pub code: String,
    /// Message type of the response: `ACK` or `NON`.
    pub kind: String,
    /// The response line as printed (payload and options included).
    pub line: String,
}

/// Sends one request with `coap-client`; `args` go before the URI. Note
/// that coap-client percent-decodes `-e` text: write `%` as `%25`.
/// Panics with the client's output if no response arrived.
pub fn request(server: SocketAddr, path: &str, args: &[&str]) -> Answer {
    let uri = format!("coap://{server}/{path}");
    run(CLIENT, &uri, args).unwrap_or_else(|text| panic!("no response to {uri} {args:?}:\n{text}"))
}

/// Sends one request over DTLS (`coaps://`) with libcoap's OpenSSL build;
/// `args` carry the credentials (`-u id -k key`, or `-c cert -j key -C ca`).
/// `Err` holds the client's output when no response arrived (a failed
/// handshake).
pub fn secure_request(server: SocketAddr, path: &str, args: &[&str]) -> Result<Answer, String> {
    run(SECURE_CLIENT, &format!("coaps://{server}/{path}"), args)
}

/// The `coap-client` of libcoap3-bin built with OpenSSL (DTLS).
const SECURE_CLIENT: &str = "coap-client-openssl";

fn run(client: &str, uri: &str, args: &[&str]) -> Result<Answer, String> {
    let out = Command::new(client)
        .args(["-v", "6", "-B", "5"])
        .args(args)
        .arg(uri)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {client} (apt-get install libcoap3-bin): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The response is the last `v:1 t:ACK|NON c:X.YY` line that is not our request.
    let Some(line) = text.lines().rfind(|l| {
        l.contains("v:1 ")
            && (l.contains(" t:ACK ") || l.contains(" t:NON "))
            && !l.contains(" c:GET ")
            && !l.contains(" c:POST ")
            && !l.contains(" c:PUT ")
    }) else {
        return Err(text);
    };
    let line = line.to_owned();
    let field = |prefix: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(prefix))
            .unwrap_or_default()
            .to_owned()
    };
    Ok(Answer {
        code: field("c:"),
        kind: field("t:"),
        line,
    })
}

/// POSTs `payload` with content format `format` to `/r/<device>`.
pub fn post(server: SocketAddr, device: &str, format: u16, payload: &str) -> Answer {
    request(
        server,
        &format!("r/{device}"),
        &["-m", "post", "-t", &format.to_string(), "-e", payload],
    )
}

/// A confirmable POST of a JSON `payload` to `/r/<device>` with message id
/// `mid` (and the same as token), built with the adapter's request builder.
pub fn con_post(mid: u16, device: &str, payload: &[u8]) -> Vec<u8> {
    use sluice_coap::client::{JSON, Request};
    Request::new(coap_lite::RequestType::Post, ["r", device])
        .with_payload(JSON, payload.to_vec())
        .encode(mid, &mid.to_be_bytes())
        .expect("encode")
}

/// A device posting reading `n` (`{"n": n}`, as `device`) as soon as reading
/// `n - 1` was answered 2.04, for `0..max`; it stops at the first other
/// answer or silence (the gateway is gone). `acked` counts the 2.04s: the
/// readings `0..acked` are the ones the gateway holds durable.
pub fn posting_device(
    server: SocketAddr,
    device: &'static str,
    max: u64,
    acked: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .expect("timeout");
        let mut buf = [0u8; 1500];
        for n in 0..max {
            let post = con_post(n as u16, device, format!("{{\"n\": {n}}}").as_bytes());
            if socket.send_to(&post, server).is_err() {
                return;
            }
            match socket.recv_from(&mut buf) {
                // 0x44: 2.04 Changed.
                Ok((len, _)) if len > 1 && buf[1] == 0x44 => {
                    acked.store(n + 1, std::sync::atomic::Ordering::SeqCst);
                }
                _ => return,
            }
        }
    })
}
