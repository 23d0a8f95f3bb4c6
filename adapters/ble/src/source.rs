//! The seam between where advertisements come from and what is done with
//! them: a source hands [`Advertisement`]s into a bounded channel until it
//! is told to stop. BlueZ ([`crate::bluez`]), a replay file
//! ([`ReplaySource`]) and a script ([`ScriptedSource`], tests and
//! benchmarks) are sources; the [`crate::pipeline`] behind them is one.

use crate::advertisement::Advertisement;
use crate::config::Pace;
use crate::rejection::BleRejection;
use crate::replay;
use sluice_adapter_common::{BoxFuture, Counters, Shutdown, clock};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

/// Advertisements waiting for the pipeline. A radio source drops (and
/// counts) what does not fit; a replay waits.
pub const CHANNEL: usize = 1024;

/// Why a source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The replay file could not be read.
    #[error("cannot read the replay file {path}: {source}")]
    Replay {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where advertisements come from.
pub trait AdvertisementSource: Send {
    /// Hands advertisements to `out` until `shutdown` fires (or, for a
    /// finite source, until it has no more), stamping each with the time
    /// it is heard.
    fn run(
        self: Box<Self>,
        out: mpsc::Sender<Advertisement>,
        shutdown: Shutdown,
    ) -> BoxFuture<'static, Result<(), SourceError>>;
}

/// A fixed list of advertisements, each sent after the given delay (tests, benchmarks).
#[derive(Debug)]
pub struct ScriptedSource(pub Vec<(Duration, Advertisement)>);

impl AdvertisementSource for ScriptedSource {
    fn run(
        self: Box<Self>,
        out: mpsc::Sender<Advertisement>,
        mut shutdown: Shutdown,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            for (delay, mut ad) in self.0 {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait() => return Ok(()),
                }
                if ad.time_ms == 0 {
                    ad.time_ms = clock::now_ms();
                }
                if out.send(ad).await.is_err() {
                    return Ok(());
                }
            }
            Ok(())
        })
    }
}

/// A JSON-lines file of advertisements (format in [`crate::replay`]).
#[derive(Debug)]
pub struct ReplaySource {
    /// The file.
    pub path: PathBuf,
    /// Paced by the file's times, or as fast as taken.
    pub pace: Pace,
    /// Start again at the end.
    pub repeat: bool,
    /// Where bad lines are counted.
    pub counters: Arc<Counters>,
}

/// Longest pause a replay keeps between two lines, however far apart
/// their times are (a capture left running overnight replays in minutes).
const MAX_GAP: Duration = Duration::from_secs(60);

impl AdvertisementSource for ReplaySource {
    fn run(
        self: Box<Self>,
        out: mpsc::Sender<Advertisement>,
        mut shutdown: Shutdown,
    ) -> BoxFuture<'static, Result<(), SourceError>> {
        Box::pin(async move {
            loop {
                let file = tokio::fs::File::open(&self.path).await.map_err(|source| {
                    SourceError::Replay {
                        path: self.path.clone(),
                        source,
                    }
                })?;
                let mut lines = tokio::io::BufReader::new(file).lines();
                let mut previous: Option<f64> = None;
                let mut delivered = 0u64;
                let mut number = 0u64;
                loop {
                    let line = tokio::select! {
                        line = lines.next_line() => line.map_err(|source| SourceError::Replay { path: self.path.clone(), source })?,
                        _ = shutdown.wait() => return Ok(()),
                    };
                    let Some(line) = line else { break };
                    number += 1;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let recorded = match replay::parse_line(&line) {
                        Ok(r) => r,
                        Err(error) => {
                            self.counters.reject(BleRejection::BadReplayLine);
                            tracing::warn!(file = %self.path.display(), line = number, error = %error, "Replay line skipped");
                            continue;
                        }
                    };
                    if self.pace == Pace::Recorded
                        && let (Some(before), Some(now)) = (previous, recorded.time)
                    {
                        let gap = Duration::try_from_secs_f64(now - before)
                            .unwrap_or(Duration::ZERO)
                            .min(MAX_GAP);
                        tokio::select! {
                            _ = tokio::time::sleep(gap) => {}
                            _ = shutdown.wait() => return Ok(()),
                        }
                    }
                    previous = recorded.time.or(previous);
                    let mut ad = recorded.advertisement;
                    ad.time_ms = clock::now_ms();
                    if out.send(ad).await.is_err() {
                        return Ok(());
                    }
                    delivered += 1;
                }
                if !self.repeat {
                    tracing::info!(file = %self.path.display(), advertisements = delivered, "Replay finished");
                    return Ok(());
                }
                if delivered == 0 {
                    // Nothing to repeat: do not spin on an empty file.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.wait() => return Ok(()),
                    }
                }
            }
        })
    }
}
