//! A do-nothing CoAP server: every request is answered `2.04` at once (a
//! piggybacked ACK for CON, a NON for NON) with the generator's batched
//! system calls. Against it the generator shows its own ceiling.

use crate::udp::{self, Datagrams};
use crate::wire::{Header, changed_answer};
use anyhow::{Context, Result};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Serves on `listen` (port 0: any), printing `{"port": N}` once bound, for
/// `duration` (or until killed).
pub fn run(listen: &str, duration: Option<Duration>) -> Result<()> {
    let socket = udp::socket(listen).with_context(|| format!("bind {listen}"))?;
    let port = socket.local_addr().context("local address")?.port();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", serde_json::json!({ "port": port })).context("print the port")?;
    stdout.flush().context("print the port")?;
    let fd = socket.as_raw_fd();
    let (mut inbox, mut answers) = (Datagrams::default(), Datagrams::default());
    let mut mid: u16 = 0;
    let start = Instant::now();
    while duration.is_none_or(|d| start.elapsed() < d) {
        if inbox.receive(fd).context("receive")? == 0 {
            udp::wait(fd, libc::POLLIN, Duration::from_millis(100)).context("wait")?;
            continue;
        }
        for i in 0..inbox.len() {
            let Some(request) = Header::parse(inbox.get(i)) else {
                continue;
            };
            mid = mid.wrapping_add(1);
            let mut answer = [0u8; 16];
            if let Some(n) = changed_answer(&request, mid, &mut answer) {
                answers.push(Some((&inbox, i)), |buf| {
                    buf[..n].copy_from_slice(&answer[..n]);
                    n
                });
            }
        }
        answers.send(fd, Duration::from_secs(1)).context("answer")?;
    }
    Ok(())
}
