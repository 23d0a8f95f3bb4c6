//! What management changed, kept on disk under `<data_dir>/managed/`: the
//! last applied config (`config.toml`) and the function modules deployed
//! remotely (`functions/<sha256>.wasm`, content-addressed), with chunked
//! uploads in progress in `uploads/`.
//!
//! Old or new, never a mix: a module is written to a temporary file,
//! fsynced and renamed to its digest's name (it replaces nothing, since a
//! name is its content); a config is written to `candidate.toml`, fsynced,
//! validated, applied and only then renamed over `config.toml` (the
//! commit point), and the folder fsynced. A SIGKILL anywhere before the
//! rename leaves the old config pointing at old modules, which are only
//! pruned after a commit.

use super::command::{Code, Failure};
use crate::config::Config;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The managed folder of one gateway.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

/// The SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` to `path` atomically: a temporary file beside it,
/// fsynced, renamed over `path`, and the folder fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl Store {
    /// The store of a gateway whose data lives in `data_dir`.
    pub fn new(data_dir: &Path) -> Store {
        Store {
            dir: data_dir.join("managed"),
        }
    }

    /// The folder relative module paths of an applied config are relative to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last applied config, if there is one.
    pub fn saved(&self) -> Option<PathBuf> {
        let path = self.dir.join("config.toml");
        path.exists().then_some(path)
    }

    /// Writes `text` as the candidate and checks it exactly as `sluice
    /// check` does (parse, validate, files, function modules against the
    /// ABI). Blocking. On problems, the candidate is removed and the lines
    /// returned.
    pub fn stage(&self, text: &str) -> Result<Config, Failure> {
        let candidate = self.dir.join("candidate.toml");
        write_atomic(&candidate, text.as_bytes()).map_err(|e| {
            Failure::new(
                Code::Internal,
                format!("cannot write {}: {e}", candidate.display()),
            )
        })?;
        Config::load_with(&candidate, crate::functions::check_modules).map_err(|e| {
            self.discard();
            Failure::new(Code::InvalidConfig, e.to_string())
        })
    }

    /// Makes the candidate the config a restart uses.
    pub fn commit(&self) -> std::io::Result<()> {
        std::fs::rename(
            self.dir.join("candidate.toml"),
            self.dir.join("config.toml"),
        )?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Drops the candidate.
    pub fn discard(&self) {
        let _ = std::fs::remove_file(self.dir.join("candidate.toml"));
    }

    /// Where the module with this digest lives once deployed.
    pub fn module_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("functions").join(format!("{sha256}.wasm"))
    }

    /// Adds one chunk of an upload (`offset` must be what has arrived so
    /// far). Returns how many bytes have arrived, and once all `size` have,
    /// the module's path after its digest matched. Blocking.
    pub fn upload(
        &self,
        sha256: &str,
        size: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(u64, Option<PathBuf>), Failure> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Failure::new(
                Code::BadRequest,
                "args.sha256: 64 hex digits are required",
            ));
        }
        let sha256 = sha256.to_ascii_lowercase();
        let done = self.module_path(&sha256);
        if done.exists() {
            return Ok((size, Some(done)));
        }
        let io =
            |what: &str, e: std::io::Error| Failure::new(Code::Internal, format!("{what}: {e}"));
        let uploads = self.dir.join("uploads");
        std::fs::create_dir_all(&uploads).map_err(|e| io("cannot create uploads folder", e))?;
        let part = uploads.join(format!("{sha256}.part"));
        if offset == 0 {
            let _ = std::fs::remove_file(&part);
        }
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if offset != have {
            return Err(Failure::new(
                Code::BadChunk,
                format!(
                    "chunk at offset {offset}, but {have} bytes have arrived; send offset {have}"
                ),
            ));
        }
        let now = have + data.len() as u64;
        if now > size {
            let _ = std::fs::remove_file(&part);
            return Err(Failure::new(
                Code::BadChunk,
                format!("{now} bytes, more than size {size}"),
            ));
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(|e| io("cannot open upload", e))?;
        file.write_all(data)
            .map_err(|e| io("cannot write upload", e))?;
        if now < size {
            return Ok((now, None));
        }
        drop(file);
        let bytes = std::fs::read(&part).map_err(|e| io("cannot read upload", e))?;
        let _ = std::fs::remove_file(&part);
        let digest = sha256_hex(&bytes);
        if digest != sha256 {
            return Err(Failure::new(
                Code::DigestMismatch,
                format!(
                    "the module's SHA-256 is {digest}, not {sha256}; send it again from offset 0"
                ),
            ));
        }
        write_atomic(&done, &bytes).map_err(|e| io("cannot store module", e))?;
        Ok((now, Some(done)))
    }

    /// Deletes deployed modules that `config` no longer names, and uploads
    /// older than a day. Only after a commit: until then the old config may
    /// still be what a restart uses.
    pub fn prune(&self, config: &Config) {
        let used: Vec<PathBuf> = config.functions.iter().map(|f| f.module.clone()).collect();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("functions")) {
            for e in entries.flatten() {
                let path = e.path();
                let named = used
                    .iter()
                    .any(|u| u == &path || u.canonicalize().ok() == path.canonicalize().ok());
                if !named {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
}

/// `text` with every function's relative module path made absolute against
/// `base` (the folder of the file it came from), so that it means the same
/// wherever it is stored.
pub fn absolute_modules(text: &str, base: &Path) -> Result<String, String> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    if let Some(toml::Value::Array(functions)) = table.get_mut("functions") {
        for f in functions.iter_mut() {
            if let Some(toml::Value::String(module)) = f.get_mut("module") {
                let path = Path::new(module.as_str());
                if path.is_relative() {
                    *module = base.join(path).display().to_string();
                }
            }
        }
    }
    toml::to_string(&table).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_in_chunks_lands_under_its_digest_only_if_it_matches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path());
        let bytes = b"\0asm module bytes".to_vec();
        let sha = sha256_hex(&bytes);
        let size = bytes.len() as u64;
        assert_eq!(
            store.upload(&sha, size, 0, &bytes[..5]).expect("first"),
            (5, None)
        );
        let err = store.upload(&sha, size, 3, &bytes[5..]).expect_err("gap");
        assert_eq!(err.code, Code::BadChunk);
        let (n, path) = store.upload(&sha, size, 5, &bytes[5..]).expect("last");
        assert_eq!(n, size);
        assert_eq!(std::fs::read(path.expect("done")).expect("read"), bytes);
        let wrong = sha256_hex(b"other");
        let err = store.upload(&wrong, size, 0, &bytes).expect_err("digest");
        assert_eq!(err.code, Code::DigestMismatch);
        assert!(!store.module_path(&wrong).exists());
    }

    #[test]
    fn relative_modules_become_absolute() {
        let text = "[[functions]]\nname = \"a\"\nmodule = \"f/a.wasm\"\n[[functions]]\nname = \"b\"\nmodule = \"/x/b.wasm\"\n";
        let out = absolute_modules(text, Path::new("/etc/sluice")).expect("ok");
        assert!(out.contains("/etc/sluice/f/a.wasm"), "{out}");
        assert!(out.contains("\"/x/b.wasm\""), "{out}");
    }
}
