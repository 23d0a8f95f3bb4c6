//! One adapter under supervision: its first run uses what [`Runtime::start`]
//! (or a reload) opened; a run that fails, returns early or panics is
//! logged, counted in the adapter's `restarts` and started again, opening
//! its resources anew, with capped back-off. The rest of the gateway never
//! notices.
//!
//! [`Runtime::start`]: super::Runtime::start

use crate::config::AdapterConfig;
use crate::uplink::Backoff;
use sluice_adapter_common::{
    BoxFuture, Context, Counters, DownlinkSender, OpenError, Opened, Resource, Shutdown, downlink,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The first wait before an adapter is restarted; it doubles up to [`RESTART_MAX`].
const RESTART_MIN: Duration = Duration::from_millis(200);
/// The longest wait between restarts.
const RESTART_MAX: Duration = Duration::from_secs(30);
/// A run that lasted this long was healthy: the back-off starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// A supervised adapter, as the runtime holds it.
#[derive(Debug)]
pub struct Supervised {
    /// The config it runs with.
    pub config: AdapterConfig,
    /// What it held when it was opened.
    pub holds: Vec<Resource>,
    /// Downlinks to its devices.
    pub downlinks: DownlinkSender,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What the adapter's runs share with the core.
pub struct Core<S> {
    /// Where events go.
    pub sink: S,
    /// The adapter's counters (kept across restarts and reloads).
    pub counters: Arc<Counters>,
}

impl Supervised {
    /// Starts supervising an opened adapter.
    pub fn start<S: sluice_adapter_common::Sink>(
        config: AdapterConfig,
        opened: Box<dyn Opened>,
        core: Core<S>,
    ) -> Supervised {
        let holds = opened.holds();
        let (stop, shutdown) = Shutdown::manual();
        let (downlinks, receiver) = downlink::channel();
        let context = Context {
            sink: sluice_adapter_common::EventSink::new(core.sink),
            counters: core.counters,
            shutdown,
            downlinks: receiver,
        };
        let reopen_config = config.clone();
        let reopen: Reopen = Arc::new(move || {
            let config = reopen_config.clone();
            Box::pin(async move { config.adapter().open().await })
        });
        let task = tokio::spawn(supervise(config.name(), reopen, opened, context));
        Supervised {
            config,
            holds,
            downlinks,
            stop,
            task,
        }
    }

    /// Whether its supervisor is still at work.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// The adapter's name.
    pub fn name(&self) -> &'static str {
        self.config.name()
    }

    /// Tells the adapter to stop and waits until it has resolved what was
    /// in flight, at most `deadline`; one that overstays is logged by name
    /// and abandoned (its tasks are aborted).
    pub async fn stop(self, deadline: Duration) {
        let name = self.name();
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            tracing::warn!(
                adapter = name,
                deadline_ms = deadline.as_millis() as u64,
                "Adapter overstayed its shutdown deadline; abandoning what it holds in flight"
            );
            task.abort();
        }
    }
}

/// Aborts a task when dropped, so an abandoned supervisor takes its run along.
struct AbortOnDrop(JoinHandle<Result<(), sluice_adapter_common::RunError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens an adapter again after a failure.
type Reopen = Arc<dyn Fn() -> BoxFuture<'static, Result<Box<dyn Opened>, OpenError>> + Send + Sync>;

/// Runs the adapter until its shutdown fires, restarting it when it fails.
async fn supervise(name: &'static str, reopen: Reopen, first: Box<dyn Opened>, context: Context) {
    let mut shutdown = context.shutdown.clone();
    let mut backoff = Backoff::new(RESTART_MIN, RESTART_MAX);
    let mut opened = Some(first);
    loop {
        let ready = match opened.take() {
            Some(o) => o,
            None => match reopen().await {
                Ok(o) => o,
                Err(error) => {
                    let retry_in = backoff.next_delay();
                    tracing::error!(adapter = name, error = %error, retry_in_ms = retry_in.as_millis() as u64,
                        "Adapter cannot reopen; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(retry_in) => continue,
                        _ = shutdown.wait() => return,
                    }
                }
            },
        };
        let began = Instant::now();
        let mut run = AbortOnDrop(tokio::spawn(ready.run(context.clone())));
        let outcome = (&mut run.0).await;
        if shutdown.is_set() {
            if let Ok(Err(error)) = &outcome {
                tracing::warn!(adapter = name, error = %error, "Adapter failed while stopping");
            }
            return;
        }
        let why = match outcome {
            Ok(Ok(())) => "returned without being told to stop".to_owned(),
            Ok(Err(error)) => error.to_string(),
            Err(join) if join.is_panic() => format!("panicked: {}", panic_message(join)),
            Err(join) => join.to_string(),
        };
        Counters::add(&context.counters.restarts, 1);
        if began.elapsed() >= HEALTHY_RUN {
            backoff.reset();
        }
        let retry_in = backoff.next_delay();
        tracing::error!(adapter = name, error = %why, restart_in_ms = retry_in.as_millis() as u64,
            "Adapter failed; restarting it");
        tokio::select! {
            _ = tokio::time::sleep(retry_in) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// The text a panic was raised with, if it was text.
fn panic_message(join: tokio::task::JoinError) -> String {
    let payload = join.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_adapter_common::testing::{CollectingSink, context};
    use sluice_adapter_common::{RunError, Sink};
    use sluice_event::Event;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// How a test adapter's run ends.
    #[derive(Clone, Copy)]
    enum Ending {
        Panic,
        Error,
        Serve,
    }

    /// Submits one event per run, then ends as its run number says.
    struct Scripted {
        device: &'static str,
        endings: Arc<Vec<Ending>>,
        runs: Arc<AtomicU32>,
    }

    impl Opened for Scripted {
        fn holds(&self) -> Vec<Resource> {
            Vec::new()
        }

        fn run(self: Box<Self>, mut context: Context) -> BoxFuture<'static, Result<(), RunError>> {
            Box::pin(async move {
                let n = self.runs.fetch_add(1, Ordering::SeqCst) as usize;
                let event = Event::new(format!("test/{}", self.device), self.device, n as i64);
                if context.sink.accept(vec![event]).await.is_err() {
                    return Err("refused".into());
                }
                match self.endings.get(n).copied().unwrap_or(Ending::Serve) {
                    Ending::Panic => panic!("scripted panic"),
                    Ending::Error => Err("scripted failure".into()),
                    Ending::Serve => {
                        context.shutdown.wait().await;
                        Ok(())
                    }
                }
            })
        }
    }

    fn scripted(
        device: &'static str,
        endings: Vec<Ending>,
    ) -> (Reopen, Box<dyn Opened>, Arc<AtomicU32>) {
        let endings = Arc::new(endings);
        let runs = Arc::new(AtomicU32::new(0));
        let make = {
            let (endings, runs) = (endings.clone(), runs.clone());
            move || -> Box<dyn Opened> {
                Box::new(Scripted {
                    device,
                    endings: endings.clone(),
                    runs: runs.clone(),
                })
            }
        };
        let first = make();
        let reopen: Reopen = Arc::new(move || {
            let opened = make();
            Box::pin(async move { Ok(opened) })
        });
        (reopen, first, runs)
    }

    async fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_or_failing_adapter_is_restarted_and_counted_the_others_untouched() {
        let sink = CollectingSink::new();
        let (flaky_context, flaky) = context(sink.clone());
        let (steady_context, steady) = context(sink.clone());
        let (reopen, first, flaky_runs) =
            scripted("flaky", vec![Ending::Panic, Ending::Error, Ending::Serve]);
        let flaky_task = tokio::spawn(supervise("flaky", reopen, first, flaky_context));
        let (reopen, first, steady_runs) = scripted("steady", vec![Ending::Serve]);
        let steady_task = tokio::spawn(supervise("steady", reopen, first, steady_context));

        wait_for("three runs of the flaky adapter", || {
            flaky_runs.load(Ordering::SeqCst) == 3
        })
        .await;
        assert_eq!(flaky.counters.restarts.load(Ordering::Relaxed), 2);
        assert_eq!(steady.counters.restarts.load(Ordering::Relaxed), 0);
        assert_eq!(
            steady_runs.load(Ordering::SeqCst),
            1,
            "the steady adapter ran once"
        );
        wait_for("four events", || sink.len() == 4).await;

        let _ = flaky.stop.send(true);
        let _ = steady.stop.send(true);
        tokio::time::timeout(Duration::from_secs(5), flaky_task)
            .await
            .expect("flaky supervisor stops")
            .expect("no panic escapes the supervisor");
        tokio::time::timeout(Duration::from_secs(5), steady_task)
            .await
            .expect("steady supervisor stops")
            .expect("steady supervisor");
    }
}
