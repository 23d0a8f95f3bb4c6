//! The demo's simulated Modbus energy meters: one in-process slave
//! (tokio-modbus's server) answering as two meters of the Eastron SDM630
//! kind, units 1 (the grid connection) and 2 (a solar inverter), on one end
//! of a pseudo-terminal pair; the gateway's Modbus adapter polls the other
//! end as it would an RS-485 line. Where no pseudo-terminal can be made the
//! slave answers Modbus TCP on loopback instead.
//!
//! Input registers hold 32-bit floats, high word first: voltage (0),
//! current (6), power (12), frequency (70), imported energy in kWh (72).
//! Values follow slow waves of the time since start, so each poll reads a
//! little differently and energy only grows.

use sluice_adapter_common::Shutdown;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;
use tokio::task::JoinHandle;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

/// Where the slave answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// The gateway's end of the pseudo-terminal pair.
    Serial(PathBuf),
    /// Modbus TCP on loopback.
    Tcp(SocketAddr),
}

impl Line {
    /// The `[[modbus.buses]]` or `[[modbus.tcp]]` table for it, named `rs485`.
    pub fn toml(&self) -> String {
        let string = |s: String| toml::Value::String(s).to_string();
        match self {
            Line::Serial(path) => format!(
                "[[modbus.buses]]\nname = \"rs485\"\npath = {}\nbaud = 19200\nresponse_timeout = \"200 ms\"\n",
                string(path.display().to_string())
            ),
            Line::Tcp(addr) => format!(
                "[[modbus.tcp]]\nname = \"rs485\"\naddress = {}\nresponse_timeout = \"200 ms\"\n",
                string(addr.to_string())
            ),
        }
    }

    /// How the banner names it.
    pub fn describe(&self) -> String {
        match self {
            Line::Serial(path) => format!("Modbus RTU on the pseudo-terminal {}", path.display()),
            Line::Tcp(addr) => format!("Modbus TCP on {addr}"),
        }
    }
}

/// The running slave.
pub struct Meters {
    /// Where it answers.
    pub line: Line,
    task: JoinHandle<()>,
}

impl Meters {
    /// Starts the slave on a pseudo-terminal pair, or on loopback TCP where
    /// none can be made. It answers until `shutdown` fires.
    pub async fn start(shutdown: &Shutdown) -> std::io::Result<Meters> {
        match tokio_serial::SerialStream::pair() {
            Ok(pair) => Meters::serial(pair, shutdown),
            Err(error) => {
                tracing::info!(error = %error, "No pseudo-terminal; the demo meters answer Modbus TCP");
                Meters::tcp(shutdown).await
            }
        }
    }

    /// Answers RTU on the master end of `pair`; the gateway opens the other by its name.
    fn serial(
        (master, gateway_end): (tokio_serial::SerialStream, tokio_serial::SerialStream),
        shutdown: &Shutdown,
    ) -> std::io::Result<Meters> {
        use tokio_serial::SerialPort;
        let path = gateway_end
            .name()
            .map(PathBuf::from)
            .ok_or_else(|| std::io::Error::other("the pseudo-terminal has no name"))?;
        let server = tokio_modbus::server::rtu::Server::new(master);
        let mut stop = shutdown.clone();
        let service = Meter::new();
        let task = tokio::spawn(async move {
            // The gateway's end stays open here too: a pseudo-terminal
            // whose last user closes it hangs up on the slave.
            let _held = gateway_end;
            let stopped = async move { stop.wait().await };
            if let Err(error) = server.serve_until(service, stopped).await {
                tracing::warn!(error = %error, "Demo meters stopped answering");
            }
        });
        Ok(Meters {
            line: Line::Serial(path),
            task,
        })
    }

    /// Answers Modbus TCP on a free loopback port.
    async fn tcp(shutdown: &Shutdown) -> std::io::Result<Meters> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let mut stop = shutdown.clone();
        let service = Meter::new();
        let task = tokio::spawn(async move {
            let on_connected = |stream, peer| async move {
                tokio_modbus::server::tcp::accept_tcp_connection(stream, peer, |_| {
                    Ok(Some(service))
                })
            };
            let on_error = |error: std::io::Error| {
                tracing::warn!(error = %error, "Demo meters: a connection failed");
            };
            let stopped = async move { stop.wait().await };
            if let Err(error) = server.serve_until(&on_connected, on_error, stopped).await {
                tracing::warn!(error = %error, "Demo meters stopped answering");
            }
        });
        Ok(Meters {
            line: Line::Tcp(addr),
            task,
        })
    }

    /// Waits until the slave has stopped (after shutdown).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// The devices the demo config polls, with their unit ids and what they are.
pub const FLEET: [(&str, u8, &str); 2] = [
    ("meter-grid", 1, "grid connection"),
    ("meter-solar", 2, "solar inverter"),
];

/// Both meters' registers, computed when asked.
#[derive(Clone, Copy, Debug)]
struct Meter {
    started: Instant,
}

impl Meter {
    fn new() -> Meter {
        Meter {
            started: Instant::now(),
        }
    }

    /// The float a register pair starting at `address` holds for `unit`.
    fn value(&self, unit: u8, address: u16) -> Option<f32> {
        let t = self.started.elapsed().as_secs_f64();
        let wave = |period: f64| (t * std::f64::consts::TAU / period).sin();
        let voltage = 230.0 + 2.5 * wave(17.0);
        let current = match unit {
            1 => 8.0 + 4.0 * wave(23.0),
            2 => 6.0 + 5.0 * wave(41.0).abs(),
            _ => return None,
        };
        let power = voltage * current;
        let value = match address {
            0 => voltage,
            6 => current,
            12 => power,
            70 => 50.0 + 0.03 * wave(5.0),
            // kWh: a starting count plus what the mean power adds.
            72 => 1200.0 * f64::from(unit) + t * power.abs() / 3_600_000.0,
            _ => return None,
        };
        Some(value as f32)
    }

    /// `count` registers from `start`, or the exception a real meter sends.
    fn registers(&self, unit: u8, start: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        let mut words = Vec::with_capacity(usize::from(count));
        let mut address = start;
        while words.len() < usize::from(count) {
            // Registers between the mapped pairs read as zero, as on the real meter.
            let [a, b, c, d] = match self.value(unit, address) {
                Some(v) => v.to_be_bytes(),
                None if address.is_multiple_of(2) && address < 80 => [0; 4],
                None => return Err(ExceptionCode::IllegalDataAddress),
            };
            words.push(u16::from_be_bytes([a, b]));
            if words.len() < usize::from(count) {
                words.push(u16::from_be_bytes([c, d]));
            }
            address = address
                .checked_add(2)
                .ok_or(ExceptionCode::IllegalDataAddress)?;
        }
        Ok(words)
    }
}

impl tokio_modbus::server::Service for Meter {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        // A unit that is not on the line stays silent, as on a real bus.
        if !FLEET.iter().any(|(_, unit, _)| *unit == req.slave) {
            return std::future::ready(Ok(None));
        }
        let answer = match req.request {
            Request::ReadInputRegisters(start, count) if start % 2 == 0 => self
                .registers(req.slave, start, count)
                .map(|w| Some(Response::ReadInputRegisters(w))),
            Request::ReadInputRegisters(..) => Err(ExceptionCode::IllegalDataAddress),
            _ => Err(ExceptionCode::IllegalFunction),
        };
        std::future::ready(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meters_registers_are_floats_high_word_first() {
        let meter = Meter::new();
        let words = meter.registers(1, 0, 2).expect("voltage");
        let voltage = f32::from_bits(u32::from(words[0]) << 16 | u32::from(words[1]));
        assert!((227.0..233.0).contains(&voltage), "{voltage}");
        assert_eq!(meter.registers(1, 0, 14).map(|w| w.len()), Ok(14));
        assert_eq!(
            meter.registers(1, 200, 2),
            Err(ExceptionCode::IllegalDataAddress)
        );
        // A unit that is not on the line stays silent.
        use tokio_modbus::server::Service;
        let stray = SlaveRequest {
            slave: 3,
            request: Request::ReadInputRegisters(0, 2),
        };
        assert_eq!(meter.call(stray).into_inner(), Ok(None));
    }

    /// Reads the grid meter's voltage over `line` with tokio-modbus's client.
    async fn voltage(line: &Line) -> f32 {
        use tokio_modbus::prelude::{Reader, Slave};
        let mut client = match line {
            Line::Serial(path) => {
                let port = tokio_serial::SerialStream::open(&tokio_serial::new(
                    path.to_string_lossy(),
                    19200,
                ))
                .expect("open the gateway's end");
                tokio_modbus::client::rtu::attach_slave(port, Slave(1))
            }
            Line::Tcp(addr) => tokio_modbus::client::tcp::connect_slave(*addr, Slave(1))
                .await
                .expect("connect"),
        };
        let words = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_input_registers(0, 2),
        )
        .await
        .expect("an answer in time")
        .expect("transport")
        .expect("no exception");
        f32::from_bits(u32::from(words[0]) << 16 | u32::from(words[1]))
    }

    #[tokio::test]
    async fn the_meters_answer_on_a_pseudo_terminal_and_over_tcp() {
        let (stop, shutdown) = Shutdown::manual();
        let pair = tokio_serial::SerialStream::pair().expect("a pseudo-terminal pair");
        let serial = Meters::serial(pair, &shutdown).expect("serial");
        let tcp = Meters::tcp(&shutdown).await.expect("tcp");
        for line in [&serial.line, &tcp.line] {
            let v = voltage(line).await;
            assert!((227.0..233.0).contains(&v), "{line:?}: {v}");
        }
        let _ = stop.send(true);
        serial.stopped().await;
        tcp.stopped().await;
    }
}
