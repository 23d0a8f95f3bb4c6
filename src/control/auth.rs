//! Who may command this gateway: the envelope's signature, the key among
//! the configured operators, the command among that key's permitted ones,
//! the timestamp within the allowed skew and the nonce never seen before
//! (remembered in the queue database, so also across restarts). A refusal
//! names its reason; nothing is run.

use super::command::{Code, Failure, Request};
use super::envelope::{self, EnvelopeError, Purpose};
use crate::config::ControlConfig;
use crate::queue::NonceBook;

/// A command that passed every check.
#[derive(Debug)]
pub struct Authorized {
    /// The operator's name.
    pub operator: String,
    /// The signing key (base64): the reply cache is kept per key.
    pub key: String,
    /// The command.
    pub request: Request,
}

/// A refusal, with whatever of the command could be read (for the reply).
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub failure: Failure,
    /// The command's id, if the body could be read.
    pub id: Option<String>,
    /// The command's name, if the body could be read.
    pub cmd: Option<String>,
}

/// Checks a message received on `topic` at `now_ms`. The checks that cost
/// nothing come first; the nonce is recorded last, and only for a command
/// that would otherwise run, so a refused command burns no nonce.
pub async fn authorize(
    control: &ControlConfig,
    nonces: &NonceBook,
    topic: &str,
    payload: &[u8],
    now_ms: i64,
) -> Result<Authorized, Refused> {
    let refuse = |code, message: String, request: Option<&Request>| Refused {
        failure: Failure::new(code, message),
        id: request.map(|r| r.id.clone()),
        cmd: request.map(|r| r.cmd.clone()),
    };
    let (env, key) = envelope::open(Purpose::Command, topic, payload).map_err(|e| {
        let code = match e {
            EnvelopeError::Unsigned(_) => Code::Unsigned,
            EnvelopeError::Malformed | EnvelopeError::BadSignature => Code::BadSignature,
        };
        // An unsigned command may still carry a readable body: name it in the refusal.
        let request = Request::parse(payload).ok();
        refuse(code, e.to_string(), request.as_ref())
    })?;
    let request =
        Request::parse(env.body.as_bytes()).map_err(|f| refuse(f.code, f.message, None))?;
    let Some(operator) = control.operators.iter().find(|o| o.public_key == key) else {
        return Err(refuse(
            Code::UnknownKey,
            format!(
                "key {} is not an operator key of this gateway",
                key.to_base64()
            ),
            Some(&request),
        ));
    };
    let skew = i64::try_from(control.max_skew.get().as_millis()).unwrap_or(i64::MAX);
    if (now_ms - env.ts).abs() > skew {
        return Err(refuse(
            Code::Stale,
            format!(
                "signed at {} ms, {} ms from the gateway's clock; at most {} allowed",
                env.ts,
                now_ms - env.ts,
                skew
            ),
            Some(&request),
        ));
    }
    if !operator.permits(&request.cmd) {
        return Err(refuse(
            Code::NotPermitted,
            format!(
                "operator `{}` may not send `{}`",
                operator.name, request.cmd
            ),
            Some(&request),
        ));
    }
    if env.nonce.len() < 16 || env.nonce.len() > 64 {
        return Err(refuse(
            Code::BadRequest,
            "nonce must be 16-64 characters".into(),
            Some(&request),
        ));
    }
    let book = nonces.clone();
    let (k, n, ts) = (key.0.to_vec(), env.nonce.clone().into_bytes(), env.ts);
    // Anything older than this is refused as stale, so need not be remembered.
    let forget_before = now_ms - 2 * skew;
    let fresh = tokio::task::spawn_blocking(move || book.remember(&k, &n, ts, forget_before))
        .await
        .map_err(|e| refuse(Code::Internal, e.to_string(), Some(&request)))?
        .map_err(|e| refuse(Code::Internal, e.to_string(), Some(&request)))?;
    if !fresh {
        return Err(refuse(
            Code::Replayed,
            format!("nonce {} was used before by this key", env.nonce),
            Some(&request),
        ));
    }
    Ok(Authorized {
        operator: operator.name.clone(),
        key: env.key,
        request,
    })
}
