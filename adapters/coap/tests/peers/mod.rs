//! The real CoAP device the adapter's tests talk to: aiocoap running
//! `observable_server.py` (needs `pip install aiocoap cbor2`, see
//! scripts/install-test-deps.sh).
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/peers/observable_server.py"
);

/// The Python device on 127.0.0.1:`port`; killed when dropped.
pub struct Device {
    child: Child,
}

impl Device {
    /// Starts it with its counters at `first_value` and waits for "ready".
    pub async fn start(port: u16, first_value: u32) -> Device {
        let mut child = Command::new("python3")
            .arg(SERVER)
            .arg(port.to_string())
            .arg(first_value.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the device starts within 10 s");
        assert_eq!(
            first.ok().flatten().as_deref(),
            Some("ready"),
            "observable_server.py did not start (is aiocoap installed?)"
        );
        Device { child }
    }

    /// Kills it and waits until it is gone (its port is free again).
    pub async fn kill(mut self) {
        self.child.kill().await.expect("the device can be killed");
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind port 0");
    socket.local_addr().expect("local address").port()
}
