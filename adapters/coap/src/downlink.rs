//! Downlinks to CoAP devices: a confirmable request to the device's address.

use crate::config::ObserveConfig;
use crate::directory::Directory;
use sluice_adapter_common::{DownlinkError, DownlinkReceiver, Shutdown};
use std::sync::Arc;

/// Answers downlinks until shutdown.
pub async fn serve(
    downlinks: DownlinkReceiver,
    _directory: Arc<Directory>,
    _observed: Vec<ObserveConfig>,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            request = downlinks.recv() => match request {
                Some(r) => r.answer(Err(DownlinkError::Unsupported("not yet".into()))),
                None => return,
            },
        }
    }
}
