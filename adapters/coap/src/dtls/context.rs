//! The OpenSSL context every DTLS session of a listener shares: DTLS 1.2
//! only, the cipher suites of RFC 7252 §9 (PSK and ECDHE), pre-shared keys
//! by identity, certificates verified against the device CA, and stateless
//! cookies so a spoofed address cannot be sent a certificate flight
//! (RFC 6347 §4.2.1).

use super::config::{DtlsConfig, PskFile, Secret};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslOptions, SslVerifyMode,
    SslVersion,
};
use openssl::x509::X509Name;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Pre-shared-key suites: RFC 7252's mandatory CCM_8 first, then AEADs.
const PSK_SUITES: &str = "PSK-AES128-CCM8:PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:PSK-AES128-CCM:PSK-AES128-CBC-SHA256";
/// Certificate suites: RFC 7252's mandatory ECDHE-ECDSA CCM_8 first.
const CERT_SUITES: &str = "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384";
/// Bytes of a cookie: HMAC-SHA256 of the peer's address.
const COOKIE_BYTES: usize = 32;
/// The largest DTLS record sent: fits the IPv6 minimum MTU of 1280 with
/// IP and UDP headers.
pub const MTU: u32 = 1232;

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A key, certificate or PSK file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// OpenSSL refused the settings.
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] ErrorStack),
}

/// A listener's context, and where each session keeps its peer.
#[derive(Clone)]
pub struct Acceptor {
    /// The shared context.
    pub context: SslContext,
    /// Each session's peer address, for the cookie callbacks.
    pub peer: openssl::ex_data::Index<Ssl, SocketAddr>,
}

impl Acceptor {
    /// Builds the context from `config`, reading its files.
    pub fn new(config: &DtlsConfig) -> Result<Acceptor, SetupError> {
        let keys = Arc::new(keys(config)?);
        let peer = Ssl::new_ex_index::<SocketAddr>()?;
        let mut b = SslContextBuilder::new(SslMethod::dtls_server())?;
        b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
        b.set_options(SslOptions::COOKIE_EXCHANGE | SslOptions::NO_QUERY_MTU);
        let mut suites = Vec::new();
        if !keys.is_empty() {
            suites.push(PSK_SUITES);
            b.set_psk_server_callback(move |_ssl, identity, out| {
                let key = identity
                    .and_then(|id| std::str::from_utf8(id).ok())
                    .and_then(|id| keys.get(id));
                match key {
                    Some(key) if key.bytes().len() <= out.len() => {
                        out[..key.bytes().len()].copy_from_slice(key.bytes());
                        Ok(key.bytes().len())
                    }
                    // Zero bytes: unknown identity, the handshake fails.
                    _ => Ok(0),
                }
            });
        }
        if let (Some(cert), Some(key), Some(ca)) =
            (&config.certificate, &config.private_key, &config.client_ca)
        {
            suites.push(CERT_SUITES);
            b.set_certificate_chain_file(cert)
                .map_err(|e| file_error(cert, e))?;
            b.set_private_key_file(key, SslFiletype::PEM)
                .map_err(|e| file_error(key, e))?;
            b.check_private_key().map_err(|e| file_error(key, e))?;
            b.set_ca_file(ca).map_err(|e| file_error(ca, e))?;
            b.set_client_ca_list(X509Name::load_client_ca_file(ca).map_err(|e| file_error(ca, e))?);
            b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        }
        b.set_cipher_list(&suites.join(":"))?;
        let secret = PKey::hmac(&random_bytes()?)?;
        let verify_secret = secret.clone();
        b.set_cookie_generate_cb(move |ssl, out| {
            let cookie = cookie(&secret, ssl.ex_data(peer))?;
            let n = cookie.len().min(out.len());
            out[..n].copy_from_slice(&cookie[..n]);
            Ok(n)
        });
        b.set_cookie_verify_cb(move |ssl, given| {
            cookie(&verify_secret, ssl.ex_data(peer)).is_ok_and(|expected| {
                expected.len() == given.len() && openssl::memcmp::eq(&expected, given)
            })
        });
        Ok(Acceptor {
            context: b.build(),
            peer,
        })
    }
}

/// The cookie for a peer: only that address can present it back.
fn cookie(
    secret: &PKey<openssl::pkey::Private>,
    peer: Option<&SocketAddr>,
) -> Result<Vec<u8>, ErrorStack> {
    let mut signer = Signer::new(MessageDigest::sha256(), secret)?;
    signer.update(peer.map(ToString::to_string).unwrap_or_default().as_bytes())?;
    let mut mac = signer.sign_to_vec()?;
    mac.truncate(COOKIE_BYTES);
    Ok(mac)
}

fn random_bytes() -> Result<[u8; 32], ErrorStack> {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes)?;
    Ok(bytes)
}

/// Every pre-shared key: the config's, then the file's (which may not
/// repeat an identity).
fn keys(config: &DtlsConfig) -> Result<BTreeMap<String, Secret>, SetupError> {
    let mut keys = config.psk.clone();
    if let Some(path) = &config.psk_file {
        let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
        let more: PskFile = toml::from_str(&text).map_err(|e| SetupError::File {
            path: path.clone(),
            message: toml_error(&text, &e),
        })?;
        for (identity, key) in more {
            if let Err(e) = sluice_adapter_common::device_id::check(&identity) {
                return Err(SetupError::File {
                    path: path.clone(),
                    message: format!("identity `{identity}`: {e}"),
                });
            }
            if keys.insert(identity.clone(), key).is_some() {
                return Err(SetupError::File {
                    path: path.clone(),
                    message: format!("identity `{identity}` is also in the config"),
                });
            }
        }
    }
    Ok(keys)
}

/// A TOML error as `line:col: message`.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{line}:{col}: {message}")
        }
        None => message.to_owned(),
    }
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> SetupError {
    SetupError::File {
        path: path.to_owned(),
        message: e.to_string(),
    }
}
