//! Control: management commands, from the broker (signed, on the gateway's
//! and the fleet's command topics) and from the local socket (unsigned,
//! guarded by the socket's file mode), run one at a time against the
//! [`Runtime`] and answered with a reply.
//!
//! - [`envelope`]: the signed message format, shared with `sluice cmd`;
//! - [`auth`]: operator keys, permissions, skew and nonces;
//! - [`command`]: command and reply bodies, error codes;
//! - [`run`]: what each command does;
//! - [`store`]: the applied config and deployed modules on disk;
//! - [`cache`]: replies by command id;
//! - [`local`]: the Unix socket;
//! - [`keys`]: key files.

pub mod auth;
pub mod cache;
pub mod client;
pub mod command;
pub mod envelope;
pub mod keys;
pub mod local;
mod run;
pub mod store;

use crate::clock::now_ms;
use crate::config::Config;
use crate::uplink::Topics;
use cache::ReplyCache;
use command::{Code, Failure, Reply, Request};
use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use store::Store;
use tokio::sync::{mpsc, oneshot};

/// Commands waiting for the controller before their senders wait (the
/// uplink drops, and counts, what does not fit).
pub const INBOUND_CAPACITY: usize = 64;
/// Replies and status updates waiting for the uplink.
pub const OUTBOUND_CAPACITY: usize = 64;

/// A command on its way to the controller.
#[derive(Debug)]
pub enum Inbound {
    /// A message on a command topic (a signed envelope).
    Mqtt {
        /// The topic it arrived on.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// A line from the local socket (a bare command body).
    Local {
        /// The command body.
        body: Vec<u8>,
        /// Where the reply line goes.
        reply: oneshot::Sender<String>,
    },
}

/// What the controller asks the uplink to publish.
#[derive(Debug)]
pub enum Outbound {
    /// A signed reply envelope for the reply topic.
    Reply(Vec<u8>),
    /// Publish the retained status again (the config changed).
    Status,
}

/// The uplink's side of control: where commands go, where replies come from.
/// The reply receiver outlives uplink restarts (each uplink takes the lock).
#[derive(Clone, Debug)]
pub struct ControlLink {
    /// Commands received on the command topics.
    pub inbound: mpsc::Sender<Inbound>,
    /// Replies to publish.
    pub outbound: Arc<tokio::sync::Mutex<mpsc::Receiver<Outbound>>>,
}

/// The channels between uplink, local socket and controller.
pub struct Channels {
    /// For the runtime (uplink).
    pub link: ControlLink,
    /// For the local socket.
    pub inbound: mpsc::Sender<Inbound>,
    /// The controller's queue of commands.
    pub commands: mpsc::Receiver<Inbound>,
    /// The controller's way to the uplink.
    pub outbound: mpsc::Sender<Outbound>,
}

/// Makes the bounded channels.
pub fn channels() -> Channels {
    let (inbound, commands) = mpsc::channel(INBOUND_CAPACITY);
    let (outbound, out_rx) = mpsc::channel(OUTBOUND_CAPACITY);
    Channels {
        link: ControlLink {
            inbound: inbound.clone(),
            outbound: Arc::new(tokio::sync::Mutex::new(out_rx)),
        },
        inbound,
        commands,
        outbound,
    }
}

/// Changes the log filter (`log.level`); `main` owns the subscriber.
pub type LogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The config that is running, as text.
#[derive(Clone, Debug)]
pub struct Current {
    /// The text, with module paths absolute.
    pub text: String,
    /// Its SHA-256 (hex), in status and replies.
    pub hash: String,
}

impl Current {
    /// The running config's text from the file it came from.
    pub fn from_file(text: &str, file: &Path) -> Current {
        let base = file.parent().unwrap_or(Path::new(""));
        let text = store::absolute_modules(text, base).unwrap_or_else(|_| text.to_owned());
        Current {
            hash: store::sha256_hex(text.as_bytes()),
            text,
        }
    }
}

/// Signs and routes replies; cheap to clone into a task that answers later
/// (a downlink waits for its device).
#[derive(Clone)]
pub struct Replier {
    gateway: Arc<Mutex<(String, String)>>,
    key: Arc<SigningKey>,
    outbound: mpsc::Sender<Outbound>,
    cache: Arc<Mutex<ReplyCache>>,
    refused: Arc<std::sync::atomic::AtomicU64>,
}

/// Where a reply goes.
pub enum Origin {
    /// The reply topic, signed.
    Mqtt,
    /// The local socket.
    Local(oneshot::Sender<String>),
}

impl Replier {
    /// Sends `reply`, and keeps it for a repeat of the same id under `cache_key`.
    pub async fn send(&self, origin: Origin, cache_key: Option<&str>, reply: Reply) {
        let body = reply.to_json();
        if let (Some(key), Some(id), true) = (
            cache_key,
            reply.id.as_deref(),
            reply.ok || reply.error.as_ref().is_some_and(|f| !is_refusal(f.code)),
        ) && let Ok(mut cache) = self.cache.lock()
        {
            cache.put(key, id, body.clone());
        }
        self.deliver(origin, body).await;
    }

    /// Sends a reply body as it is.
    async fn deliver(&self, origin: Origin, body: String) {
        match origin {
            Origin::Local(tx) => {
                let _ = tx.send(body);
            }
            Origin::Mqtt => {
                let topic = self.reply_topic();
                let env = envelope::seal(
                    envelope::Purpose::Reply,
                    &self.key,
                    &topic,
                    now_ms(),
                    "",
                    body,
                );
                let bytes = serde_json::to_vec(&env).unwrap_or_default();
                if self.outbound.send(Outbound::Reply(bytes)).await.is_err() {
                    tracing::warn!("Reply not sent: the uplink is gone");
                }
            }
        }
    }

    fn gateway(&self) -> String {
        self.gateway.lock().map(|g| g.0.clone()).unwrap_or_default()
    }

    fn reply_topic(&self) -> String {
        self.gateway.lock().map(|g| g.1.clone()).unwrap_or_default()
    }

    /// The stored reply to `id` from `key`, marked as cached.
    fn cached(&self, key: &str, id: &str) -> Option<String> {
        let cache = self.cache.lock().ok()?;
        let body = cache.get(key, id)?;
        let mut reply: Reply = serde_json::from_str(body).ok()?;
        reply.cached = true;
        Some(reply.to_json())
    }
}

/// Refusals are not cached: the same id, properly signed, must be able to run.
fn is_refusal(code: Code) -> bool {
    matches!(
        code,
        Code::Unsigned
            | Code::BadSignature
            | Code::UnknownKey
            | Code::Stale
            | Code::Replayed
            | Code::NotPermitted
    )
}

/// Runs commands against the runtime, one at a time.
pub struct Controller {
    config: Config,
    current: Current,
    store: Store,
    nonces: crate::queue::NonceBook,
    replier: Replier,
    log_level: Option<LogLevel>,
    started: Instant,
    public_key: String,
}

/// Why control could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The gateway key could not be read or made.
    #[error("gateway key: {0}")]
    Key(#[from] keys::KeyError),
    /// The nonce book could not be opened.
    #[error("nonce book: {0}")]
    Nonces(#[from] crate::queue::NonceError),
}

impl Controller {
    /// A controller for the running `config` (its text in `current`),
    /// replying through `outbound`.
    pub fn new(
        config: &Config,
        current: Current,
        outbound: mpsc::Sender<Outbound>,
        log_level: Option<LogLevel>,
    ) -> Result<Controller, ControlError> {
        let key = keys::load_or_create(&config.control.key_path(&config.gateway.data_dir))?;
        let public_key = keys::public_of(&key).to_base64();
        let topics = Topics::new(config);
        Ok(Controller {
            store: Store::new(&config.gateway.data_dir),
            nonces: crate::queue::NonceBook::open(&config.queue_path())?,
            replier: Replier {
                gateway: Arc::new(Mutex::new((config.gateway.id.to_string(), topics.reply))),
                key: Arc::new(key),
                outbound,
                cache: Arc::new(Mutex::new(ReplyCache::new(config.control.reply_cache))),
                refused: Arc::default(),
            },
            config: config.clone(),
            current,
            log_level,
            started: Instant::now(),
            public_key,
        })
    }

    /// The gateway's public key (base64): replies are signed with it.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Commands refused (unsigned, bad signature, unknown key, stale, replayed, not permitted).
    pub fn refused(&self) -> u64 {
        self.replier
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where the last applied config is kept.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Authenticates (for MQTT), answers repeats from the cache, runs and replies.
    pub async fn handle(&mut self, runtime: &mut crate::Runtime, inbound: Inbound) {
        let (origin, cache_key, request) = match inbound {
            Inbound::Local { body, reply } => match Request::parse(&body) {
                Ok(r) => (Origin::Local(reply), "local".to_owned(), r),
                Err(f) => {
                    let _ = reply
                        .send(Reply::to(&self.replier.gateway(), None, None, Err(f)).to_json());
                    return;
                }
            },
            Inbound::Mqtt { topic, payload } => {
                match auth::authorize(
                    &self.config.control,
                    &self.nonces,
                    &topic,
                    &payload,
                    now_ms(),
                )
                .await
                {
                    Ok(a) => {
                        tracing::info!(operator = %a.operator, id = %a.request.id, command = %a.request.cmd, "Command received");
                        (Origin::Mqtt, a.key, a.request)
                    }
                    Err(refused) => {
                        self.replier
                            .refused
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        crate::metrics::Metrics::add(&runtime.metrics().control_refused, 1);
                        runtime
                            .metrics()
                            .note_error(format!("command refused: {}", refused.failure.message));
                        tracing::warn!(topic = %topic, code = ?refused.failure.code, reason = %refused.failure.message, "Command refused");
                        let reply = Reply::to(
                            &self.replier.gateway(),
                            refused.id.as_deref(),
                            refused.cmd.as_deref(),
                            Err(refused.failure),
                        );
                        self.replier.send(Origin::Mqtt, None, reply).await;
                        return;
                    }
                }
            }
        };
        if let Some(body) = self.replier.cached(&cache_key, &request.id) {
            tracing::info!(id = %request.id, "Command id seen before; answered from the reply cache");
            self.replier.deliver(origin, body).await;
            return;
        }
        crate::metrics::Metrics::add(&runtime.metrics().control_commands, 1);
        run::run(self, runtime, request, origin, cache_key).await;
    }

    /// Applies a config change: stage (check like `sluice check`), apply
    /// through the runtime, commit to disk, announce the new hash.
    async fn apply_text(
        &mut self,
        runtime: &mut crate::Runtime,
        text: String,
    ) -> Result<serde_json::Value, Failure> {
        let store = self.store.clone();
        let staged = text.clone();
        let config = tokio::task::spawn_blocking(move || store.stage(&staged))
            .await
            .map_err(|e| Failure::new(Code::Internal, e.to_string()))??;
        let changes = match runtime.apply(config.clone()).await {
            Ok(c) => c,
            Err(e) => {
                self.store.discard();
                let code = match e {
                    crate::runtime::ApplyError::NeedsRestart(_) => Code::NeedsRestart,
                    _ => Code::ApplyFailed,
                };
                tracing::error!(error = %e, "Config not applied; the running config keeps serving");
                return Err(Failure::new(code, e.to_string()));
            }
        };
        if let Err(e) = self.store.commit() {
            tracing::error!(error = %e, "Config applied but not saved; a restart would go back to the old one");
            return Err(Failure::new(
                Code::Internal,
                format!("applied, but not saved: {e}"),
            ));
        }
        self.store.prune(&config);
        self.current = Current::from_file(&text, &self.store.dir().join("config.toml"));
        if let Ok(mut g) = self.replier.gateway.lock() {
            *g = (config.gateway.id.to_string(), Topics::new(&config).reply);
        }
        self.config = config;
        runtime.set_config_hash(&self.current.hash);
        let _ = self.replier.outbound.try_send(Outbound::Status);
        tracing::info!(hash = %self.current.hash, changes = %changes, "Config applied and saved");
        Ok(serde_json::json!({ "changes": changes, "hash": self.current.hash }))
    }

    /// After a SIGHUP reload of the config file: the file is what runs, and
    /// what a restart uses.
    pub fn reloaded(&mut self, runtime: &crate::Runtime, config: &Config, text: &str, file: &Path) {
        let current = Current::from_file(text, file);
        let path: PathBuf = self.store.dir().join("config.toml");
        if self.store.saved().is_some()
            && let Err(e) = store::write_atomic(&path, current.text.as_bytes())
        {
            tracing::error!(error = %e, "Reloaded config not saved as the applied one");
        }
        runtime.set_config_hash(&current.hash);
        self.current = current;
        self.config = config.clone();
        let _ = self.replier.outbound.try_send(Outbound::Status);
    }
}
