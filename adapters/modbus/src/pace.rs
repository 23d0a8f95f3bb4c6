//! Short waits kept to within a fraction of a millisecond.
//!
//! tokio's timer counts in whole milliseconds and wakes late by up to one:
//! at 115200 baud that is more than half of the 1.75 ms frame gap, and the
//! line would sit idle a third of the time. The RTU gaps are therefore
//! timed by one thread of the adapter's own, which sleeps to each deadline
//! with the kernel's precision (tens of microseconds) and wakes the bus
//! task that asked. Longer waits still use tokio's timer for all but their
//! last two milliseconds.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Waits longer than this use tokio's timer for all but their last part.
const COARSE: Duration = Duration::from_millis(2);

/// A deadline and who to wake then.
struct Wake(Instant, oneshot::Sender<()>);

impl PartialEq for Wake {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Wake {}
impl PartialOrd for Wake {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Wake {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// A handle on the pacing thread; it ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct Pacer {
    tx: Option<mpsc::Sender<Wake>>,
}

impl Pacer {
    /// Starts the pacing thread. If no thread can be made, waits fall back
    /// to tokio's timer.
    pub fn new() -> Pacer {
        let (tx, rx) = mpsc::channel::<Wake>();
        let thread = std::thread::Builder::new()
            .name("modbus-pace".into())
            .spawn(move || serve(rx));
        Pacer {
            tx: thread.ok().map(|_| tx),
        }
    }

    /// Resolves at `deadline`, within a fraction of a millisecond.
    pub async fn until(&self, deadline: Instant) {
        let now = Instant::now();
        if deadline <= now {
            return;
        }
        if deadline - now > COARSE {
            tokio::time::sleep_until((deadline - COARSE).into()).await;
        }
        let (wake, woken) = oneshot::channel();
        match &self.tx {
            Some(tx) if tx.send(Wake(deadline, wake)).is_ok() => {
                let _ = woken.await;
            }
            _ => tokio::time::sleep_until(deadline.into()).await,
        }
    }
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new()
    }
}

/// The thread: wakes each waiter at its deadline, earliest first.
fn serve(rx: mpsc::Receiver<Wake>) {
    let mut due: BinaryHeap<Reverse<Wake>> = BinaryHeap::new();
    loop {
        let next = match due.peek() {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(Reverse(Wake(at, _))) => {
                rx.recv_timeout(at.saturating_duration_since(Instant::now()))
            }
        };
        match next {
            Ok(wake) => due.push(Reverse(wake)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) if due.is_empty() => return,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(Reverse(Wake(at, _))) = due.peek() {
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                }
            }
        }
        let now = Instant::now();
        while due.peek().is_some_and(|Reverse(Wake(at, _))| *at <= now) {
            if let Some(Reverse(Wake(_, wake))) = due.pop() {
                let _ = wake.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_end_at_their_deadline_not_before_and_not_a_millisecond_late() {
        let pacer = Pacer::new();
        let mut late = Vec::new();
        for wait_us in [300u64, 1750, 3650] {
            for _ in 0..20 {
                let deadline = Instant::now() + Duration::from_micros(wait_us);
                pacer.until(deadline).await;
                let now = Instant::now();
                assert!(now >= deadline, "woke early");
                late.push(now - deadline);
            }
        }
        late.sort();
        let median = late[late.len() / 2];
        assert!(
            median < Duration::from_micros(500),
            "median lateness {median:?}"
        );
        // A deadline already past resolves at once.
        pacer.until(Instant::now() - Duration::from_millis(1)).await;
    }
}
