//! Commands and replies as they are written inside the envelope (and on the
//! local socket, bare): `{"id", "cmd", "args"}` in, `{"id", "ok", "result"
//! | "error": {"code", "message"}}` out.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A command's body.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Chosen by the sender; a repeated id is answered from the reply cache.
    pub id: String,
    /// The command's name (`ping`, `config.apply`, …).
    pub cmd: String,
    /// The command's arguments.
    #[serde(default)]
    pub args: Value,
}

impl Request {
    /// Parses a body; the error says what is wrong.
    pub fn parse(body: &[u8]) -> Result<Request, Failure> {
        let r: Request = serde_json::from_slice(body)
            .map_err(|e| Failure::new(Code::BadRequest, format!("command body: {e}")))?;
        if r.id.is_empty() || r.id.len() > 128 {
            return Err(Failure::new(
                Code::BadRequest,
                "id must be 1-128 characters",
            ));
        }
        Ok(r)
    }

    /// Argument `name` as a string.
    pub fn str_arg(&self, name: &str) -> Result<&str, Failure> {
        self.args.get(name).and_then(Value::as_str).ok_or_else(|| {
            Failure::new(
                Code::BadRequest,
                format!("args.{name}: a string is required"),
            )
        })
    }
}

/// A command's error code: what a program reacts to (the message is for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// No signature, or not an envelope at all.
    Unsigned,
    /// The signature does not verify.
    BadSignature,
    /// The signing key is not an operator key of this gateway.
    UnknownKey,
    /// The timestamp is outside `control.max_skew`.
    Stale,
    /// This key used this nonce before.
    Replayed,
    /// The key may not send this command.
    NotPermitted,
    /// The body or an argument is malformed.
    BadRequest,
    /// No such command.
    UnknownCommand,
    /// The config has problems (`sluice check`'s lines in the message).
    InvalidConfig,
    /// The change needs a restart of the gateway.
    NeedsRestart,
    /// The new config did not start; the old one was restored.
    ApplyFailed,
    /// The uploaded module's SHA-256 does not match.
    DigestMismatch,
    /// A chunk arrived out of order.
    BadChunk,
    /// The named function, stream or adapter does not exist.
    NotFound,
    /// The device refused the downlink or could not be reached.
    DownlinkFailed,
    /// The gateway failed to do what it should have been able to do.
    Internal,
}

/// A refused or failed command: its code and a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind of failure.
    pub code: Code,
    /// What exactly.
    pub message: String,
}

impl Failure {
    /// A failure.
    pub fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// A reply's body.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    /// Format version: 1.
    pub v: u32,
    /// The command's id (`null` if the command could not be read).
    pub id: Option<String>,
    /// The answering gateway.
    pub gateway: String,
    /// The command's name, if it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// Whether it succeeded.
    pub ok: bool,
    /// What it produced, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why not, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// True when this is the stored reply to an earlier command with this id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

impl Reply {
    /// The reply to `request` from `gateway`.
    pub fn to(
        gateway: &str,
        id: Option<&str>,
        cmd: Option<&str>,
        outcome: Result<Value, Failure>,
    ) -> Reply {
        let (ok, result, error) = match outcome {
            Ok(v) => (true, Some(v), None),
            Err(f) => (false, None, Some(f)),
        };
        Reply {
            v: 1,
            id: id.map(str::to_owned),
            gateway: gateway.to_owned(),
            cmd: cmd.map(str::to_owned),
            ok,
            result,
            error,
            cached: false,
        }
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"v":1,"id":null,"gateway":"","ok":false,"error":{{"code":"internal","message":"reply not encodable: {e}"}}}}"#)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_needs_an_id_and_a_command_and_nothing_else() {
        let r = Request::parse(br#"{"id":"1","cmd":"ping"}"#).expect("ok");
        assert_eq!(
            (r.id.as_str(), r.cmd.as_str(), &r.args),
            ("1", "ping", &Value::Null)
        );
        for bad in [
            &br#"{"cmd":"ping"}"#[..],
            br#"{"id":"","cmd":"ping"}"#,
            br#"{"id":"1","cmd":"ping","x":1}"#,
            b"nope",
        ] {
            assert_eq!(
                Request::parse(bad).map_err(|f| f.code),
                Err(Code::BadRequest)
            );
        }
        let reply = Reply::to(
            "gw",
            Some("1"),
            Some("ping"),
            Err(Failure::new(Code::Stale, "old")),
        );
        let json: Value = serde_json::from_str(&reply.to_json()).expect("json");
        assert_eq!(json["error"]["code"], "stale");
        assert_eq!(json["ok"], false);
    }
}
