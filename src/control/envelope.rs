//! The signed envelopes of commands and replies on MQTT. The operator signs
//! `sluice-cmd/1`, the topic, the timestamp, the nonce and the command body
//! (the body travels as a string, so the signed bytes are exactly the bytes
//! received: no canonical JSON is needed). The gateway signs its replies
//! the same way under `sluice-reply/1`. A message to one gateway cannot be
//! replayed to another, nor a fleet message to one gateway's topic.

use crate::config::PublicKey;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What travels on a command or reply topic.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Format version: 1.
    pub v: u32,
    /// The signer's public key, base64.
    pub key: String,
    /// When it was signed, ms since the Unix epoch.
    pub ts: i64,
    /// 16 random bytes in hex (commands; replies carry none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nonce: String,
    /// The command or reply, JSON, as a string.
    pub body: String,
    /// Ed25519 signature, base64.
    pub sig: String,
}

/// Which kind of message is signed: a command and a reply can never stand for each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// An operator's command.
    Command,
    /// A gateway's reply.
    Reply,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Purpose::Command => "sluice-cmd/1",
            Purpose::Reply => "sluice-reply/1",
        }
    }
}

/// Why an envelope does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not an envelope (no signature, not JSON, wrong fields).
    #[error("not a signed envelope: {0}")]
    Unsigned(String),
    /// The key or signature is not valid base64 of the right size.
    #[error("malformed key or signature")]
    Malformed,
    /// The signature does not match the key and the signed bytes.
    #[error("signature does not verify")]
    BadSignature,
}

/// The bytes a signature covers.
fn signed_bytes(purpose: Purpose, topic: &str, ts: i64, nonce: &str, body: &str) -> Vec<u8> {
    format!("{}\n{topic}\n{ts}\n{nonce}\n{body}", purpose.tag()).into_bytes()
}

/// Signs `body` for `topic`.
pub fn seal(
    purpose: Purpose,
    key: &SigningKey,
    topic: &str,
    ts: i64,
    nonce: &str,
    body: String,
) -> Envelope {
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig = key.sign(&signed_bytes(purpose, topic, ts, nonce, &body));
    Envelope {
        v: 1,
        key: b64.encode(key.verifying_key().to_bytes()),
        ts,
        nonce: nonce.to_owned(),
        body,
        sig: b64.encode(sig.to_bytes()),
    }
}

/// Parses an envelope received on `topic` and checks its signature against
/// the key it names. Whether that key is trusted is the caller's question.
pub fn open(
    purpose: Purpose,
    topic: &str,
    payload: &[u8],
) -> Result<(Envelope, PublicKey), EnvelopeError> {
    let envelope: Envelope =
        serde_json::from_slice(payload).map_err(|e| EnvelopeError::Unsigned(e.to_string()))?;
    if envelope.v != 1 {
        return Err(EnvelopeError::Unsigned(format!(
            "version {} is not 1",
            envelope.v
        )));
    }
    let key = verify(purpose, topic, &envelope)?;
    Ok((envelope, key))
}

/// Checks an envelope's signature; returns the signer's key.
pub fn verify(purpose: Purpose, topic: &str, e: &Envelope) -> Result<PublicKey, EnvelopeError> {
    let key = PublicKey::parse(&e.key).map_err(|_| EnvelopeError::Malformed)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(&e.sig)
        .map_err(|_| EnvelopeError::Malformed)?;
    let sig = Signature::from_slice(&sig).map_err(|_| EnvelopeError::Malformed)?;
    let verifying = VerifyingKey::from_bytes(&key.0).map_err(|_| EnvelopeError::Malformed)?;
    verifying
        .verify(&signed_bytes(purpose, topic, e.ts, &e.nonce, &e.body), &sig)
        .map_err(|_| EnvelopeError::BadSignature)?;
    Ok(key)
}

/// 16 random bytes in hex, for a command's nonce.
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    // Without randomness a nonce could repeat and the command be refused as
    // a replay, which is safe; the clock makes a repeat unlikely even then.
    if getrandom::getrandom(&mut bytes).is_err() {
        let now = crate::clock::now_ms().to_le_bytes();
        bytes[..8].copy_from_slice(&now);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_sealed_command_opens_and_any_change_breaks_it() {
        let k = key(1);
        let sealed = seal(
            Purpose::Command,
            &k,
            "s/gw/cmd",
            5,
            "ab",
            r#"{"id":"1"}"#.into(),
        );
        let bytes = serde_json::to_vec(&sealed).expect("json");
        let (opened, signer) = open(Purpose::Command, "s/gw/cmd", &bytes).expect("verifies");
        assert_eq!(opened, sealed);
        assert_eq!(signer.0, k.verifying_key().to_bytes());
        // Another topic, purpose, time, nonce or body: refused.
        assert_eq!(
            open(Purpose::Command, "s/other/cmd", &bytes).err(),
            Some(EnvelopeError::BadSignature)
        );
        assert_eq!(
            open(Purpose::Reply, "s/gw/cmd", &bytes).err(),
            Some(EnvelopeError::BadSignature)
        );
        for change in [
            |e: &mut Envelope| e.ts += 1,
            |e: &mut Envelope| e.nonce = "ac".into(),
            |e: &mut Envelope| e.body = r#"{"id":"2"}"#.into(),
            |e: &mut Envelope| {
                e.key = seal(Purpose::Command, &key(2), "", 0, "", String::new()).key
            },
        ] {
            let mut e = sealed.clone();
            change(&mut e);
            assert_eq!(
                verify(Purpose::Command, "s/gw/cmd", &e),
                Err(EnvelopeError::BadSignature)
            );
        }
        assert!(matches!(
            open(Purpose::Command, "s/gw/cmd", br#"{"id":"1","cmd":"ping"}"#),
            Err(EnvelopeError::Unsigned(_))
        ));
    }
}
