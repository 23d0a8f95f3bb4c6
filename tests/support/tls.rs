//! A throw-away PKI made with the `openssl` command line: a test CA, a broker
//! certificate for 127.0.0.1 / localhost and a gateway client certificate
//! signed by it, plus a client certificate signed by a second, untrusted CA.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A certificate and its private key, both PEM files.
#[derive(Clone, Debug)]
pub struct CertKey {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every file of the test PKI, in a temporary folder.
pub struct Pki {
    dir: tempfile::TempDir,
    /// The CA the broker trusts and that signed the broker certificate.
    pub ca: PathBuf,
    /// The broker: SAN IP:127.0.0.1, DNS:localhost; EKU serverAuth.
    pub server: CertKey,
    /// The gateway (CN=gw-test), signed by `ca`; SEC1 key.
    pub client: CertKey,
    /// A second CA the broker does not know.
    pub rogue_ca: PathBuf,
    /// A client certificate (CN=gw-test) signed by `rogue_ca`.
    pub rogue_client: CertKey,
}

/// A minimal `openssl req` config, so the system's openssl.cnf adds nothing.
const REQ_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
";

/// mosquitto ACL: anonymous clients (the collector on the plain listener)
/// only read; only the user `gw-test` (the client certificate's CN, through
/// `use_identity_as_username`) may publish under its own topics.
const ACL: &str = "\
topic read sluice/#
user gw-test
topic readwrite sluice/gw-test/#
";

const SERVER_EXT: &str = "\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

const CLIENT_EXT: &str = "\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

impl Pki {
    /// Generates all keys and certificates (EC P-256, valid for two days).
    pub fn generate() -> Pki {
        let dir = tempfile::tempdir().expect("pki tempdir");
        let d = dir.path();
        write(d, "req.cnf", REQ_CONFIG);
        write(d, "server.ext", SERVER_EXT);
        write(d, "client.ext", CLIENT_EXT);
        write(d, "acl", ACL);

        let ca = self_signed_ca(d, "ca", "/O=Sluice tests/CN=Sluice Test CA");
        let server = signed(d, "server", "/CN=localhost", "ca", "server.ext", false);
        let client = signed(d, "client", "/CN=gw-test", "ca", "client.ext", true);
        let rogue_ca = self_signed_ca(d, "rogue-ca", "/O=Elsewhere/CN=Untrusted CA");
        let rogue_client = signed(
            d,
            "rogue-client",
            "/CN=gw-test",
            "rogue-ca",
            "client.ext",
            false,
        );
        Pki {
            dir,
            ca,
            server,
            client,
            rogue_ca,
            rogue_client,
        }
    }

    /// The folder holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// mosquitto lines for a TLS listener on `port` that requires a client
    /// certificate signed by the test CA and uses its CN as the username,
    /// plus an ACL that lets only `gw-test` publish (so a delivery proves the
    /// CN became the username).
    pub fn listener_lines(&self, port: u16) -> String {
        format!(
            "acl_file {acl}\n\
             listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
             require_certificate true\nuse_identity_as_username true\n",
            acl = self.dir().join("acl").display(),
            ca = self.ca.display(),
            cert = self.server.cert.display(),
            key = self.server.key.display(),
        )
    }
}

/// A gateway config draining `dir`'s queue to `mqtts://127.0.0.1:<port>`,
/// trusting `ca` and presenting `client`; quick reconnects (100–300 ms).
pub fn config_text(dir: &Path, port: u16, ca: &Path, client: &CertKey) -> String {
    format!(
        r#"
[gateway]
id = "gw-test"
data_dir = '{dir}'

[uplink]
url = "mqtts://127.0.0.1:{port}"
keep_alive = "2 s"
linger = "50 ms"
reconnect_min = "100 ms"
reconnect_max = "300 ms"

[uplink.tls]
ca = '{ca}'
cert = '{cert}'
key = '{key}'
"#,
        dir = dir.display(),
        ca = ca.display(),
        cert = client.cert.display(),
        key = client.key.display(),
    )
}

/// Waits until something accepts TCP connections on loopback `port`.
pub fn wait_for_port(port: u16) {
    super::wait_until_blocking(Duration::from_secs(10), "a listener on the port", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

/// Runs `openssl args…` in `dir`, panicking with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is installed");
    assert!(
        out.status.success(),
        "openssl {} failed: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PKCS#8 P-256 key (`genpkey`), or a SEC1 one (`ecparam -genkey`).
fn p256_key(dir: &Path, file: &str, sec1: bool) {
    if sec1 {
        openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                file,
            ],
        );
    } else {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                file,
            ],
        );
    }
}

/// `<name>.key` and a self-signed CA certificate `<name>.pem`.
fn self_signed_ca(dir: &Path, name: &str, subject: &str) -> PathBuf {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    p256_key(dir, &key, false);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-config",
            "req.cnf",
            "-extensions",
            "v3_ca",
            "-key",
            &key,
            "-subj",
            subject,
            "-days",
            "2",
            "-sha256",
            "-out",
            &pem,
        ],
    );
    dir.join(pem)
}

/// `<name>.key` and `<name>.pem` signed by the CA `<ca>.pem`/`<ca>.key` with extensions `ext`.
fn signed(dir: &Path, name: &str, subject: &str, ca: &str, ext: &str, sec1: bool) -> CertKey {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    p256_key(dir, &key, sec1);
    openssl(
        dir,
        &[
            "req", "-new", "-config", "req.cnf", "-key", &key, "-subj", subject, "-out", &csr,
        ],
    );
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            ext,
            "-out",
            &pem,
        ],
    );
    CertKey {
        cert: dir.join(pem),
        key: dir.join(key),
    }
}
