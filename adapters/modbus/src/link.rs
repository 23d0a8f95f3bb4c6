//! One bus's or connection's link to its devices: opens the serial port or
//! TCP connection (and opens it again after it vanished), and makes one
//! request at a time with tokio-modbus, within the response timeout, with
//! retries and the silence the line needs between exchanges.
//!
//! What tokio-modbus does not do is here:
//! - **A timeout per request.** tokio-modbus has none of its own.
//! - **No late answer taken for the next one.** RTU answers carry no
//!   request id: after a request timed out (or an answer did not match) the
//!   line is drained until it has been quiet for a whole response timeout,
//!   so a late answer is read and thrown away rather than taken for the
//!   answer to the next request; every answer must also have the size and
//!   echo its request asks for. Over TCP the connection is dropped instead.
//! - **Faults told apart.** tokio-modbus drops an answer with a bad CRC and
//!   waits on; the [`Tap`] keeps the bytes that arrived since the request,
//!   so a timeout with bytes is a CRC error or a broken frame, not silence.
//! - **A vanished port is opened again by its path**, with back-off, never
//!   a crash: once a serial device is gone its file descriptor stays broken
//!   even when the device is back.

use crate::device::{Data, WriteData};
use crate::fault::{Exception, Fault};
use crate::pace::Pacer;
use crate::rtu;
use sluice_adapter_common::Counters;
use std::borrow::Cow;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_modbus::client::{Client, Context as ModbusContext};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{Request, Response, Slave};

/// Bytes kept from an answer to classify a timeout; more is noise anyway.
const SEEN_MAX: usize = 300;
/// First wait before a port or connection that failed is opened again.
const REOPEN_MIN: Duration = Duration::from_millis(250);
/// Longest wait between attempts to open it.
const REOPEN_MAX: Duration = Duration::from_secs(5);

/// What the link talks over.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    /// A serial line (Modbus RTU).
    Serial {
        /// The device path.
        path: std::path::PathBuf,
        /// Speed and character framing.
        framing: rtu::Framing,
    },
    /// A Modbus TCP server.
    Tcp {
        /// `host:port`.
        address: String,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Serial { path, .. } => write!(f, "{}", path.display()),
            Endpoint::Tcp { address } => write!(f, "tcp://{address}"),
        }
    }
}

/// Timing of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a device has to answer.
    pub response_timeout: Duration,
    /// Silence between the end of one exchange and the next request (for
    /// RTU at least the 3.5-character frame gap).
    pub between: Duration,
    /// Repetitions of a request that may succeed when repeated.
    pub retries: u8,
}

/// One request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read `count` registers or bits of a table from `start`.
    Read {
        /// The read function code (1–4).
        function: u8,
        /// First address.
        start: u16,
        /// How many.
        count: u16,
    },
    /// Write values from `start` with FC 5, 6, 15 or 16.
    Write {
        /// The function code.
        function: u8,
        /// First address.
        start: u16,
        /// What is written.
        data: WriteData,
    },
}

/// An answer and when it arrived (ms since the Unix epoch).
#[derive(Clone, Debug, PartialEq)]
pub struct Answered {
    /// Data read, or `None` for a confirmed write.
    pub data: Option<Data>,
    /// Wall-clock time of arrival.
    pub at_ms: i64,
}

/// A transport tokio-modbus can frame.
trait Transport: AsyncRead + AsyncWrite + Send + Unpin + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + fmt::Debug> Transport for T {}

/// What the tap shares between its handle in tokio-modbus and the link.
#[derive(Debug)]
struct Tapped {
    io: Box<dyn Transport>,
    seen: Vec<u8>,
    bytes_in: u64,
}

/// A transport that remembers what it read (for classifying timeouts) and
/// lets the link drain it while tokio-modbus holds the other handle. Only
/// one task (the bus's) ever uses either handle, so the lock is never
/// contended.
#[derive(Clone, Debug)]
struct Tap(Arc<Mutex<Tapped>>);

impl Tap {
    fn new(io: Box<dyn Transport>) -> Tap {
        Tap(Arc::new(Mutex::new(Tapped {
            io,
            seen: Vec::new(),
            bytes_in: 0,
        })))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Tapped) -> R) -> Option<R> {
        self.0.lock().ok().map(|mut t| f(&mut t))
    }

    /// Forgets what was read so far; returns the bytes counted since last asked.
    fn mark(&self) -> u64 {
        self.with(|t| {
            t.seen.clear();
            std::mem::take(&mut t.bytes_in)
        })
        .unwrap_or(0)
    }

    /// The bytes read since the last mark.
    fn seen(&self) -> Vec<u8> {
        self.with(|t| t.seen.clone()).unwrap_or_default()
    }

    /// Reads and drops whatever arrives until the line has been quiet for
    /// `quiet`, for at most `limit` in all. Returns false if the transport
    /// failed or closed.
    async fn drain(&self, quiet: Duration, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut scratch = [0u8; 256];
        loop {
            let read = std::future::poll_fn(|cx| {
                let Ok(mut t) = self.0.lock() else {
                    return Poll::Ready(Err(std::io::Error::other("poisoned")));
                };
                let mut buf = ReadBuf::new(&mut scratch);
                match Pin::new(&mut t.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        t.bytes_in += buf.filled().len() as u64;
                        Poll::Ready(Ok(buf.filled().len()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            });
            let until = (tokio::time::Instant::now() + quiet).min(deadline);
            match tokio::time::timeout_at(until, read).await {
                Err(_) => return true,
                Ok(Ok(0)) | Ok(Err(_)) => return false,
                Ok(Ok(_)) if tokio::time::Instant::now() >= deadline => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}

impl AsyncRead for Tap {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let Ok(mut t) = self.0.lock() else {
            return Poll::Ready(Err(std::io::Error::other("poisoned")));
        };
        let before = buf.filled().len();
        let result = Pin::new(&mut t.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let new = &buf.filled()[before..];
            t.bytes_in += new.len() as u64;
            let room = SEEN_MAX.saturating_sub(t.seen.len());
            let keep = &new[..new.len().min(room)];
            t.seen.extend_from_slice(keep);
        }
        result
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.0.lock() {
            Ok(mut t) => Pin::new(&mut t.io).poll_write(cx, data),
            Err(_) => Poll::Ready(Err(std::io::Error::other("poisoned"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.0.lock() {
            Ok(mut t) => Pin::new(&mut t.io).poll_flush(cx),
            Err(_) => Poll::Ready(Err(std::io::Error::other("poisoned"))),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        match self.0.lock() {
            Ok(mut t) => Pin::new(&mut t.io).poll_shutdown(cx),
            Err(_) => Poll::Ready(Err(std::io::Error::other("poisoned"))),
        }
    }
}

/// An open port or connection.
struct Open {
    modbus: ModbusContext,
    tap: Tap,
}

/// The link of one bus or connection.
pub struct Link {
    /// The bus's name, for logs.
    bus: String,
    endpoint: Endpoint,
    timing: Timing,
    counters: Arc<Counters>,
    open: Option<Open>,
    /// When the last exchange ended: the next request waits `between` after it.
    last: Option<Instant>,
    /// A request went unanswered (RTU): drain before the next one.
    drain: bool,
    /// When opening may be tried again, and the wait after that.
    reopen_at: Option<Instant>,
    reopen_wait: Duration,
    /// Whether the last attempt to open failed (logged once per outage).
    failing: bool,
    /// Times the silence between exchanges.
    pacer: Pacer,
}

impl Link {
    /// A link for `bus` that opens `endpoint` on first use; `pacer` times
    /// the silences between exchanges.
    pub fn new(
        bus: &str,
        endpoint: Endpoint,
        timing: Timing,
        counters: Arc<Counters>,
        pacer: Pacer,
    ) -> Link {
        Link {
            bus: bus.to_owned(),
            endpoint,
            timing,
            counters,
            open: None,
            last: None,
            drain: false,
            reopen_at: None,
            reopen_wait: REOPEN_MIN,
            failing: false,
            pacer,
        }
    }

    /// The response timeout.
    pub fn response_timeout(&self) -> Duration {
        self.timing.response_timeout
    }

    /// Whether the port or connection is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Opens the port or connection if it is not, unless the last attempt
    /// failed less than the back-off ago.
    pub async fn ensure_open(&mut self) -> Result<(), Fault> {
        if self.open.is_some() {
            return Ok(());
        }
        if self.reopen_at.is_some_and(|at| Instant::now() < at) {
            return Err(Fault::Unreachable);
        }
        match connect(self.endpoint.clone(), self.timing.response_timeout).await {
            Ok(io) => {
                let tap = Tap::new(io);
                let modbus = match self.endpoint {
                    Endpoint::Serial { .. } => {
                        tokio_modbus::client::rtu::attach_slave(tap.clone(), Slave(0))
                    }
                    Endpoint::Tcp { .. } => {
                        tokio_modbus::client::tcp::attach_slave(tap.clone(), Slave(0))
                    }
                };
                tracing::info!(bus = %self.bus, link = %self.endpoint, "Modbus link open");
                self.open = Some(Open { modbus, tap });
                self.failing = false;
                self.reopen_at = None;
                self.reopen_wait = REOPEN_MIN;
                // Whatever a previous port left in flight is gone with it.
                self.drain = false;
                Ok(())
            }
            Err(error) => {
                let retry_in = self.reopen_wait;
                if !self.failing {
                    tracing::error!(bus = %self.bus, link = %self.endpoint, error = %error,
                        retry_in_ms = retry_in.as_millis() as u64,
                        "Modbus link cannot be opened; retrying with back-off");
                } else {
                    tracing::debug!(bus = %self.bus, link = %self.endpoint, error = %error,
                        "Modbus link still cannot be opened");
                }
                self.failing = true;
                self.reopen_at = Some(Instant::now() + retry_in);
                self.reopen_wait = (retry_in * 2).min(REOPEN_MAX);
                Err(Fault::Unreachable)
            }
        }
    }

    /// Closes the port or connection; the next request opens it again.
    fn close(&mut self, why: &str) {
        if self.open.take().is_some() {
            tracing::warn!(bus = %self.bus, link = %self.endpoint, why, "Modbus link closed; it will be opened again");
        }
        self.reopen_at = None;
    }

    /// Sends `op` to unit `unit`, repeating it while the fault says a
    /// repetition may help, at most `retries` times. `repeated` is told
    /// the fault of each attempt that was repeated (the last one is the
    /// result).
    pub async fn request(
        &mut self,
        unit: u8,
        op: &Op,
        mut repeated: impl FnMut(Fault),
    ) -> Result<Answered, Fault> {
        let mut attempt = 0;
        loop {
            match self.once(unit, op).await {
                Ok(answer) => return Ok(answer),
                Err(fault) if fault.retryable() && attempt < self.timing.retries => {
                    repeated(fault);
                    tracing::debug!(bus = %self.bus, unit, fault = %fault, attempt, "Modbus request repeated");
                    attempt += 1;
                }
                Err(fault) => return Err(fault),
            }
        }
    }

    /// One request, one answer (or none).
    async fn once(&mut self, unit: u8, op: &Op) -> Result<Answered, Fault> {
        self.ensure_open().await?;
        if let Some(last) = self.last {
            self.pacer.until(last + self.timing.between).await;
        }
        let Some(open) = self.open.as_mut() else {
            return Err(Fault::Unreachable);
        };
        if self.drain {
            let quiet = self.timing.response_timeout;
            if !open.tap.drain(quiet, quiet * 4).await {
                self.close("failed while draining");
                return Err(Fault::LinkLost);
            }
            self.drain = false;
        }
        let bytes = open.tap.mark();
        Counters::add(&self.counters.bytes_in, bytes);
        open.modbus.set_slave(Slave(unit));
        let request = to_request(op);
        let outcome =
            tokio::time::timeout(self.timing.response_timeout, open.modbus.call(request)).await;
        let at_ms = sluice_adapter_common::clock::now_ms();
        self.last = Some(Instant::now());
        let seen = open.tap.seen();
        Counters::add(&self.counters.bytes_in, open.tap.mark());
        let serial = matches!(self.endpoint, Endpoint::Serial { .. });
        match outcome {
            Ok(Ok(Ok(response))) => {
                Counters::add(&self.counters.messages_in, 1);
                match check(op, response) {
                    Some(data) => Ok(Answered { data, at_ms }),
                    None => {
                        self.after_mismatch(serial);
                        Err(Fault::Mismatch)
                    }
                }
            }
            Ok(Ok(Err(code))) => {
                Counters::add(&self.counters.messages_in, 1);
                Err(Fault::Exception(Exception::from(code)))
            }
            Ok(Err(tokio_modbus::Error::Protocol(error))) => {
                tracing::debug!(bus = %self.bus, unit, error = %error, "Modbus answer does not match its request");
                self.after_mismatch(serial);
                Err(Fault::Mismatch)
            }
            Ok(Err(tokio_modbus::Error::Transport(error))) => {
                tracing::warn!(bus = %self.bus, link = %self.endpoint, error = %error, "Modbus link failed");
                self.close("failed");
                Err(Fault::LinkLost)
            }
            Err(_) => {
                if serial {
                    self.drain = true;
                } else {
                    // A late answer over TCP is for a request the next
                    // connection never made.
                    self.close("an answer timed out");
                }
                Err(Fault::from_unanswered(rtu::classify(&seen)))
            }
        }
    }

    /// After an answer that was not for this request: more may follow.
    fn after_mismatch(&mut self, serial: bool) {
        if serial {
            self.drain = true;
        } else {
            self.close("an answer did not match its request");
        }
    }
}

/// Opens the serial port by its path, or connects (within `timeout`, at least a second).
async fn connect(endpoint: Endpoint, timeout: Duration) -> std::io::Result<Box<dyn Transport>> {
    match endpoint {
        Endpoint::Serial { path, framing } => {
            let builder = crate::serial::builder(&path, framing);
            let port = tokio_serial::SerialStream::open(&builder)
                .map_err(|e| std::io::Error::other(crate::serial::describe(&path, e)))?;
            Ok(Box::new(port))
        }
        Endpoint::Tcp { address } => {
            let connect = tokio::net::TcpStream::connect(address.as_str());
            let stream = tokio::time::timeout(timeout.max(Duration::from_secs(1)), connect)
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream))
        }
    }
}

/// The tokio-modbus request for `op`.
fn to_request(op: &Op) -> Request<'static> {
    match op {
        Op::Read {
            function: 1,
            start,
            count,
        } => Request::ReadCoils(*start, *count),
        Op::Read {
            function: 2,
            start,
            count,
        } => Request::ReadDiscreteInputs(*start, *count),
        Op::Read {
            function: 4,
            start,
            count,
        } => Request::ReadInputRegisters(*start, *count),
        Op::Read { start, count, .. } => Request::ReadHoldingRegisters(*start, *count),
        Op::Write {
            function: 5,
            start,
            data: WriteData::Bits(b),
        } => Request::WriteSingleCoil(*start, b.first().copied().unwrap_or(false)),
        Op::Write {
            start,
            data: WriteData::Bits(b),
            ..
        } => Request::WriteMultipleCoils(*start, Cow::Owned(b.clone())),
        Op::Write {
            function: 6,
            start,
            data: WriteData::Words(w),
        } => Request::WriteSingleRegister(*start, w.first().copied().unwrap_or(0)),
        Op::Write {
            start,
            data: WriteData::Words(w),
            ..
        } => Request::WriteMultipleRegisters(*start, Cow::Owned(w.clone())),
    }
}

/// The answer's data if it is the answer `op` asks for (size, echo), else `None`.
fn check(op: &Op, response: Response) -> Option<Option<Data>> {
    match (op, response) {
        (
            Op::Read {
                function: 1, count, ..
            },
            Response::ReadCoils(mut bits),
        )
        | (
            Op::Read {
                function: 2, count, ..
            },
            Response::ReadDiscreteInputs(mut bits),
        ) => {
            // Bits come in whole bytes; more than a byte's worth extra is wrong.
            let n = usize::from(*count);
            (bits.len() >= n && bits.len() < n + 8).then(|| {
                bits.truncate(n);
                Some(Data::Bits(bits))
            })
        }
        (
            Op::Read {
                function: 3, count, ..
            },
            Response::ReadHoldingRegisters(words),
        )
        | (
            Op::Read {
                function: 4, count, ..
            },
            Response::ReadInputRegisters(words),
        ) => (words.len() == usize::from(*count)).then_some(Some(Data::Words(words))),
        (
            Op::Write {
                start,
                data: WriteData::Bits(b),
                function: 5,
            },
            Response::WriteSingleCoil(a, v),
        ) => (a == *start && Some(&v) == b.first()).then_some(None),
        (
            Op::Write {
                start,
                data: WriteData::Bits(b),
                ..
            },
            Response::WriteMultipleCoils(a, n),
        ) => (a == *start && usize::from(n) == b.len()).then_some(None),
        (
            Op::Write {
                start,
                data: WriteData::Words(w),
                function: 6,
            },
            Response::WriteSingleRegister(a, v),
        ) => (a == *start && Some(&v) == w.first()).then_some(None),
        (
            Op::Write {
                start,
                data: WriteData::Words(w),
                ..
            },
            Response::WriteMultipleRegisters(a, n),
        ) => (a == *start && usize::from(n) == w.len()).then_some(None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_must_have_the_size_and_echo_asked_for() {
        let read = |function, count| Op::Read {
            function,
            start: 0,
            count,
        };
        assert_eq!(
            check(&read(3, 2), Response::ReadHoldingRegisters(vec![1, 2])),
            Some(Some(Data::Words(vec![1, 2])))
        );
        assert_eq!(
            check(&read(3, 2), Response::ReadHoldingRegisters(vec![1])),
            None
        );
        assert_eq!(
            check(&read(3, 1), Response::ReadInputRegisters(vec![1])),
            None
        );
        assert_eq!(
            check(
                &read(1, 3),
                Response::ReadCoils(vec![true, false, true, false, false, false, false, false])
            ),
            Some(Some(Data::Bits(vec![true, false, true])))
        );
        assert_eq!(
            check(&read(1, 3), Response::ReadCoils(vec![true; 16])),
            None
        );
        let write = Op::Write {
            function: 6,
            start: 7,
            data: WriteData::Words(vec![42]),
        };
        assert_eq!(
            check(&write, Response::WriteSingleRegister(7, 42)),
            Some(None)
        );
        assert_eq!(check(&write, Response::WriteSingleRegister(7, 43)), None);
        let coils = Op::Write {
            function: 15,
            start: 1,
            data: WriteData::Bits(vec![true, true]),
        };
        assert_eq!(
            check(&coils, Response::WriteMultipleCoils(1, 2)),
            Some(None)
        );
        assert_eq!(check(&coils, Response::WriteMultipleCoils(2, 2)), None);
    }
}
