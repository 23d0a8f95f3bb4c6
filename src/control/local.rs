//! Local control: the same commands on a Unix socket, one JSON command per
//! line in, one JSON reply per line out, no signature. The socket is made
//! with mode 0600, so only the service user (and root) can use it: being
//! able to open it is the authentication. `sluice status` and `sluice cmd
//! --local` are its clients.

use super::Inbound;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

/// Clients served at once; more wait to be accepted.
const CONNECTIONS: usize = 8;
/// Longest command line (a function chunk in base64 fits easily).
pub const MAX_LINE: usize = 4 << 20;

/// Binds the socket at `path` (replacing a stale one) with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        // A gateway that still listens there would answer; a stale file is removed.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running gateway", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves `listener` until `stop`, handing each command to the controller.
pub async fn serve(
    listener: UnixListener,
    commands: mpsc::Sender<Inbound>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let commands = commands.clone();
                    tokio::spawn(async move {
                        if let Err(error) = connection(stream, commands).await {
                            tracing::debug!(error = %error, "Local control connection ended");
                        }
                        drop(permit);
                    });
                }
                Err(error) => tracing::warn!(error = %error, "Local control socket cannot accept"),
            },
            _ = stop.changed() => return,
        }
    }
}

async fn connection(stream: UnixStream, commands: mpsc::Sender<Inbound>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = tokio::io::AsyncReadExt::take(&mut lines, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            write.write_all(b"{\"ok\":false,\"error\":{\"code\":\"bad_request\",\"message\":\"line too long\"}}\n").await?;
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        let body = std::mem::take(&mut line);
        if commands.send(Inbound::Local { body, reply }).await.is_err() {
            return Ok(());
        }
        let Ok(mut text) = answer.await else {
            return Ok(());
        };
        text.push('\n');
        write.write_all(text.as_bytes()).await?;
    }
}

/// Sends one command line to the socket at `path` and returns the reply line.
pub async fn request(path: &Path, body: &str) -> std::io::Result<String> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot connect to {}: {e}", path.display()),
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(body.as_bytes()).await?;
    write.write_all(b"\n").await?;
    let mut reply = String::new();
    BufReader::new(read).read_line(&mut reply).await?;
    Ok(reply.trim_end().to_owned())
}
