//! Downlinks: the core asks an adapter to send something to one of its
//! devices and gets the device's answer back. One typed handle for every
//! protocol: a CoAP request, a Modbus write, a LoRaWAN downlink, a BLE write.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot};

/// Requests waiting for an adapter; beyond this the sender is told `Busy`.
pub const QUEUE: usize = 32;

/// What to send to which device.
#[derive(Clone, Debug, PartialEq)]
pub struct Downlink {
    /// The device id, as in its events' `device`.
    pub device: String,
    /// Where on the device, in the adapter's terms: a CoAP resource path
    /// (`led` or `config/interval`), a Modbus point name, a LoRaWAN FPort,
    /// a BLE characteristic.
    pub resource: String,
    /// Whether the value replaces a setting or invokes an action.
    pub verb: Verb,
    /// The value sent.
    pub value: Value,
}

impl Downlink {
    /// `verb` `value` on `resource` of `device`.
    pub fn new(device: &str, resource: &str, verb: Verb, value: Value) -> Downlink {
        Downlink {
            device: device.to_owned(),
            resource: resource.to_owned(),
            verb,
            value,
        }
    }
}

/// What a downlink does with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Set a value (CoAP `PUT`, a Modbus register write).
    Set,
    /// Ask the device to act on the value (CoAP `POST`).
    Invoke,
}

/// A typed value; each adapter encodes it for its wire.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// No payload.
    Empty,
    /// A boolean (`true` / `false` as text on text protocols).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

impl Value {
    /// The value as bytes on a text protocol: numbers and booleans in decimal text.
    pub fn to_text_bytes(&self) -> Vec<u8> {
        match self {
            Value::Empty => Vec::new(),
            Value::Bool(b) => b.to_string().into_bytes(),
            Value::Int(i) => i.to_string().into_bytes(),
            Value::Float(f) => f.to_string().into_bytes(),
            Value::Text(t) => t.clone().into_bytes(),
            Value::Bytes(b) => b.clone(),
        }
    }
}

/// The device's answer to a downlink it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The protocol's success status (`2.04` for CoAP).
    pub status: String,
    /// What the device sent back, if anything.
    pub payload: Vec<u8>,
}

/// Why a downlink did not reach its device or was refused by it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DownlinkError {
    /// No adapter of that name is running.
    #[error("no adapter `{0}` is running")]
    NoAdapter(String),
    /// The adapter does not know where the device is.
    #[error("unknown device `{0}`")]
    UnknownDevice(String),
    /// The adapter cannot send this kind of downlink.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The device answered with an error status.
    #[error("device answered {status}: {message}")]
    Refused {
        /// The protocol's status (`4.04`, a Modbus exception code).
        status: String,
        /// The device's diagnostic, if it sent one.
        message: String,
    },
    /// The device did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Sending failed (no route, socket error).
    #[error("cannot send: {0}")]
    Io(String),
    /// Too many downlinks are waiting for this adapter.
    #[error("too many downlinks waiting")]
    Busy,
    /// The adapter stopped before answering.
    #[error("the adapter stopped before the device answered")]
    Stopped,
}

/// One downlink handed to an adapter, and where its answer goes.
#[derive(Debug)]
pub struct Request {
    /// What to send.
    pub downlink: Downlink,
    reply: oneshot::Sender<Result<Answer, DownlinkError>>,
}

impl Request {
    /// Resolves the sender's future with the device's answer or the error.
    pub fn answer(self, result: Result<Answer, DownlinkError>) {
        // The sender may have given up waiting; that is not the adapter's problem.
        let _ = self.reply.send(result);
    }
}

/// The core's end: sends downlinks to one adapter.
#[derive(Clone, Debug)]
pub struct DownlinkSender(mpsc::Sender<Request>);

impl DownlinkSender {
    /// Sends `downlink`; resolves with the device's answer or an error.
    /// Refuses at once with [`DownlinkError::Busy`] if the adapter is behind.
    pub async fn send(&self, downlink: Downlink) -> Result<Answer, DownlinkError> {
        let (tx, rx) = oneshot::channel();
        let request = Request {
            downlink,
            reply: tx,
        };
        self.0.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => DownlinkError::Busy,
            mpsc::error::TrySendError::Closed(_) => DownlinkError::Stopped,
        })?;
        rx.await.unwrap_or(Err(DownlinkError::Stopped))
    }
}

/// The adapter's end. It outlives one run of the adapter: a restarted
/// adapter takes over the same queue, so nothing the core sent is lost.
#[derive(Clone, Debug)]
pub struct DownlinkReceiver(Arc<Mutex<mpsc::Receiver<Request>>>);

impl DownlinkReceiver {
    /// The next downlink; `None` once the core has dropped every sender.
    pub async fn recv(&self) -> Option<Request> {
        self.0.lock().await.recv().await
    }
}

/// A bounded downlink queue for one adapter.
pub fn channel() -> (DownlinkSender, DownlinkReceiver) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (
        DownlinkSender(tx),
        DownlinkReceiver(Arc::new(Mutex::new(rx))),
    )
}

impl fmt::Display for Downlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.verb {
            Verb::Set => "set",
            Verb::Invoke => "invoke",
        };
        write!(f, "{verb} {}/{}", self.device, self.resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn led() -> Downlink {
        Downlink::new("d1", "led", Verb::Set, Value::Bool(true))
    }

    #[tokio::test]
    async fn the_adapter_answers_the_sender() {
        let (tx, rx) = channel();
        let adapter = tokio::spawn(async move {
            let request = rx.recv().await.expect("a request");
            assert_eq!(request.downlink, led());
            request.answer(Ok(Answer {
                status: "2.04".into(),
                payload: b"on".to_vec(),
            }));
        });
        let answer = tx.send(led()).await;
        assert_eq!(
            answer,
            Ok(Answer {
                status: "2.04".into(),
                payload: b"on".to_vec()
            })
        );
        adapter.await.expect("adapter task");
    }

    #[tokio::test]
    async fn a_dropped_request_or_a_gone_adapter_is_stopped() {
        let (tx, rx) = channel();
        let adapter = tokio::spawn(async move { drop(rx.recv().await) });
        assert_eq!(tx.send(led()).await, Err(DownlinkError::Stopped));
        adapter.await.expect("adapter task");
        assert_eq!(tx.send(led()).await, Err(DownlinkError::Stopped));
    }

    #[tokio::test]
    async fn a_full_queue_is_busy() {
        let (tx, _rx) = channel();
        let mut waiting = Vec::new();
        for _ in 0..QUEUE {
            let tx = tx.clone();
            waiting.push(tokio::spawn(async move { tx.send(led()).await }));
        }
        // Let the spawned sends enqueue.
        while tx.0.capacity() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(tx.send(led()).await, Err(DownlinkError::Busy));
    }

    #[test]
    fn values_as_text() {
        assert_eq!(Value::Float(21.5).to_text_bytes(), b"21.5");
        assert_eq!(Value::Bool(false).to_text_bytes(), b"false");
        assert_eq!(Value::Int(-3).to_text_bytes(), b"-3");
    }
}
