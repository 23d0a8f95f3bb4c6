//! The real Modbus devices the adapter's tests talk to: pymodbus slaves
//! (`modbus_slave.py`; needs `pip install 'pymodbus>=3.16,<4' pyserial`)
//! on one end of a socat PTY pair (`apt-get install socat`), the adapter on
//! the other; see scripts/install-test-deps.sh.
#![allow(dead_code)]

use sluice_adapter_common::testing::wait_until_blocking;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The slave script, from the adapter's tests or the gateway's (which
/// include this module too).
pub fn slave_script() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let here = root.join("tests/peers/modbus_slave.py");
    if here.exists() {
        here
    } else {
        root.join("adapters/modbus/tests/peers/modbus_slave.py")
    }
}

/// A socat PTY pair whose ends keep their names across restarts:
/// `<dir>/gw` (the gateway's) and `<dir>/slave`.
pub struct Pty {
    dir: PathBuf,
    socat: Option<std::process::Child>,
}

impl Pty {
    /// Starts socat in `dir` and waits until both ends exist.
    pub fn start(dir: &Path) -> Pty {
        let mut pty = Pty {
            dir: dir.to_owned(),
            socat: None,
        };
        pty.open();
        pty
    }

    fn open(&mut self) {
        let end = |name: &str| format!("pty,raw,echo=0,link={}", self.dir.join(name).display());
        let child = std::process::Command::new("socat")
            .arg(end("gw"))
            .arg(end("slave"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat starts (apt-get install socat)");
        self.socat = Some(child);
        wait_until_blocking(Duration::from_secs(10), "socat making a PTY pair", || {
            self.gateway_end().exists() && self.slave_end().exists()
        });
    }

    /// The end the gateway opens.
    pub fn gateway_end(&self) -> PathBuf {
        self.dir.join("gw")
    }

    /// The end the slave serves on.
    pub fn slave_end(&self) -> PathBuf {
        self.dir.join("slave")
    }

    /// Kills socat: both ends vanish, as an unplugged USB adapter does.
    pub fn vanish(&mut self) {
        if let Some(mut child) = self.socat.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_until_blocking(
            Duration::from_secs(10),
            "the PTY links gone after socat died",
            || !self.gateway_end().exists(),
        );
    }

    /// A new pair under the same names, as when the adapter is plugged in again.
    pub fn reappear(&mut self) {
        self.open();
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Some(mut child) = self.socat.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A pymodbus process serving some unit ids, driven through its stdin.
pub struct Slave {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Slave {
    /// Serves `units` on `port` (a PTY end, or `tcp:N`); waits for "ready".
    pub async fn start(port: &str, units: &[u8]) -> Slave {
        let units: Vec<String> = units.iter().map(u8::to_string).collect();
        let mut child = Command::new("python3")
            .arg(slave_script())
            .arg(port)
            .arg(units.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let mut slave = Slave {
            child,
            stdin,
            stdout,
        };
        assert_eq!(
            slave.line().await,
            "ready",
            "modbus_slave.py did not start (is pymodbus installed?)"
        );
        slave
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
            .await
            .expect("the slave answers within 20 s")
            .ok()
            .flatten()
            .expect("the slave is running")
    }

    /// Sends one command; returns its answer.
    pub async fn cmd(&mut self, command: &str) -> String {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write to the slave");
        self.stdin.flush().await.expect("flush");
        self.line().await
    }

    /// `set UNIT TABLE ADDR VALUES…`, which must succeed.
    pub async fn set(&mut self, unit: u8, table: &str, address: u16, values: &[u16]) {
        let values: Vec<String> = values.iter().map(u16::to_string).collect();
        let answer = self
            .cmd(&format!(
                "set {unit} {table} {address} {}",
                values.join(" ")
            ))
            .await;
        assert_eq!(answer, "ok", "set {unit} {table} {address}");
    }

    /// The datastore's values.
    pub async fn get(&mut self, unit: u8, table: &str, address: u16, count: u16) -> Vec<u16> {
        let answer = self
            .cmd(&format!("get {unit} {table} {address} {count}"))
            .await;
        answer
            .split_whitespace()
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("get answered {answer}"))
            })
            .collect()
    }

    /// Requests the slave saw for `unit` with function `function`.
    pub async fn requests(&mut self, unit: u8, function: u8) -> u64 {
        let answer = self.cmd(&format!("requests {unit} {function}")).await;
        answer.parse().expect("a count")
    }

    /// Kills it.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local address").port()
}
