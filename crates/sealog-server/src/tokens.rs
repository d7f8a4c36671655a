//! The tokens file: who may call the server, with which scopes, for which
//! tenant.
//!
//! The file (default `<data-dir>/tokens.json`) holds, for each token, its
//! name, the SHA-256 of its secret (never the secret), its scopes, an
//! optional tenant binding, and when it was created and revoked. It is
//! written atomically (a temporary file, fsync, rename, fsync of the
//! directory) with mode 0600, under an exclusive lock on a `.lock` file
//! beside it, so concurrent `sealog token` commands cannot lose each
//! other's changes. A running server notices a new version of the file
//! within a second (see [`TokenStore`]).
//!
//! Secrets are `slg_` followed by 43 characters of URL-safe base64 (32
//! random bytes from the operating system). Authentication hashes the
//! presented secret and compares it with every entry's hash in constant
//! time, so neither the match position nor a near miss shows in timing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every secret, so a leaked one is recognisable (secret
/// scanners, logs).
pub const SECRET_PREFIX: &str = "slg_";

/// The file name of the tokens file in the data directory.
pub const DEFAULT_FILE_NAME: &str = "tokens.json";

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `POST /v1/events`.
    Ingest,
    /// Reading: queries, single records, tail, checkpoints, proofs, stats.
    Query,
    /// `POST /v1/verify`; implies nothing else.
    Admin,
}

impl Scope {
    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Query => "query",
            Scope::Admin => "admin",
        }
    }

    /// Parses a comma-separated list (`ingest,query`).
    pub fn parse_list(text: &str) -> Result<Vec<Scope>, TokenError> {
        let mut scopes = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope = match part {
                "ingest" => Scope::Ingest,
                "query" => Scope::Query,
                "admin" => Scope::Admin,
                other => {
                    return Err(TokenError::Invalid(format!(
                        "unknown scope `{other}`: the scopes are ingest, query and admin"
                    )));
                }
            };
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err(TokenError::Invalid(
                "give at least one scope: ingest, query or admin".into(),
            ));
        }
        scopes.sort();
        Ok(scopes)
    }
}

/// One token as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// A unique name; the principal recorded in the server's own audit
    /// events (`actor = {"type": "token", "id": NAME}`).
    pub name: String,
    /// Lowercase hex SHA-256 of the secret.
    pub sha256: String,
    /// What the token may do.
    pub scopes: Vec<Scope>,
    /// The tenant the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl TokenEntry {
    /// Whether the token has `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    /// Format version (1).
    pub version: u32,
    /// Every token ever created, revoked ones included.
    pub tokens: Vec<TokenEntry>,
}

/// What can go wrong with tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file cannot be read or written.
    #[error("cannot {op} the tokens file `{}`: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a tokens file.
    #[error("the tokens file `{}` is malformed: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A request to change tokens is invalid.
    #[error("{0}")]
    Invalid(String),
}

impl TokenError {
    /// What to do about the error.
    pub fn fix(&self) -> String {
        match self {
            TokenError::Io { path, source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "create it with a first token: `sealog token create --tokens {} --name \
                     NAME --scopes ingest,query`",
                    path.display()
                ),
                std::io::ErrorKind::PermissionDenied => format!(
                    "let the user running sealog read (and, to change tokens, write) `{}`",
                    path.display()
                ),
                _ => format!("check `{}` and the disk that holds it", path.display()),
            },
            TokenError::Malformed { path, .. } => format!(
                "`{}` is written by `sealog token`: restore it from a backup, or repair what \
                 is named above (at the line and column given); moving it aside and creating \
                 new tokens means every client needs a new secret",
                path.display()
            ),
            TokenError::Invalid(_) => "see `sealog token --help`".to_owned(),
        }
    }
}

/// The SHA-256 of a secret, in hex.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A fresh random secret.
pub fn new_secret() -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        TokenError::Invalid(format!("the operating system's random source failed: {e}"))
    })?;
    Ok(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(TokenError::Invalid(format!(
            "token name `{name}` is invalid: use 1 to 64 letters, digits, `-`, `_`, `.` or `@`"
        )))
    }
}

impl TokensFile {
    /// Reads a tokens file.
    pub fn load(path: &Path) -> Result<TokensFile, TokenError> {
        let bytes = fs::read(path).map_err(|source| TokenError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })?;
        let file: TokensFile =
            serde_json::from_slice(&bytes).map_err(|e| TokenError::Malformed {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if file.version != 1 {
            return Err(TokenError::Malformed {
                path: path.to_path_buf(),
                reason: format!("version {} is not supported (expected 1)", file.version),
            });
        }
        Ok(file)
    }

    /// Reads a tokens file, or an empty one if it does not exist.
    pub fn load_or_empty(path: &Path) -> Result<TokensFile, TokenError> {
        if path.exists() {
            TokensFile::load(path)
        } else {
            Ok(TokensFile {
                version: 1,
                tokens: Vec::new(),
            })
        }
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), TokenError> {
        let io = |op: &'static str, source| TokenError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| io("create the directory of", e))?;
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(|e| io("serialize", std::io::Error::other(e)))?;
        text.push(b'\n');
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("create a temporary file beside", e))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(|e| io("write", e))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| io("rename into place", e))?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync the directory of", e))?;
        Ok(())
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&TokenEntry> {
        self.tokens.iter().find(|t| t.name == name)
    }
}

/// Runs `f` on the file under an exclusive lock, saving what it leaves.
pub fn modify<T>(
    path: &Path,
    f: impl FnOnce(&mut TokensFile) -> Result<T, TokenError>,
) -> Result<T, TokenError> {
    let mut lock_name = path.as_os_str().to_owned();
    lock_name.push(".lock");
    let lock_path = PathBuf::from(lock_name);
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| TokenError::Io {
            op: "create the directory of",
            path: path.to_path_buf(),
            source,
        })?;
    }
    let lock = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|source| TokenError::Io {
            op: "create the lock file of",
            path: path.to_path_buf(),
            source,
        })?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
        TokenError::Io {
            op: "lock",
            path: path.to_path_buf(),
            source: e.into(),
        }
    })?;
    let mut file = TokensFile::load_or_empty(path)?;
    let out = f(&mut file)?;
    file.save(path)?;
    drop(lock);
    Ok(out)
}

/// Creates a token; returns its entry and the secret (shown only once).
pub fn create(
    path: &Path,
    name: &str,
    scopes: Vec<Scope>,
    tenant: Option<String>,
) -> Result<(TokenEntry, String), TokenError> {
    check_name(name)?;
    if let Some(t) = &tenant
        && (t.is_empty() || t.len() > 128 || t.chars().any(char::is_control))
    {
        return Err(TokenError::Invalid(format!(
            "tenant `{t}` is invalid: 1 to 128 characters, no control characters"
        )));
    }
    let secret = new_secret()?;
    let entry = TokenEntry {
        name: name.to_owned(),
        sha256: hash_secret(&secret),
        scopes,
        tenant,
        created_at: sealog::Timestamp::now().to_rfc3339(),
        revoked_at: None,
    };
    let stored = entry.clone();
    modify(path, move |file| {
        if file.get(&stored.name).is_some() {
            return Err(TokenError::Invalid(format!(
                "a token named `{}` already exists (names are never reused, revoked ones \
                 included): choose another name",
                stored.name
            )));
        }
        file.tokens.push(stored);
        Ok(())
    })?;
    Ok((entry, secret))
}

/// Revokes the token `name`; returns its entry.
pub fn revoke(path: &Path, name: &str) -> Result<TokenEntry, TokenError> {
    if !path.exists() {
        return Err(TokenError::Invalid(format!(
            "there is no tokens file at `{}`",
            path.display()
        )));
    }
    modify(path, |file| {
        let entry = file
            .tokens
            .iter_mut()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                TokenError::Invalid(format!(
                    "no token named `{name}`: list them with `sealog token list`"
                ))
            })?;
        if entry.revoked_at.is_none() {
            entry.revoked_at = Some(sealog::Timestamp::now().to_rfc3339());
        }
        Ok(entry.clone())
    })
}

/// The result of checking a presented secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// A live token.
    Valid(TokenEntry),
    /// A token that was revoked.
    Revoked(TokenEntry),
    /// No token has this secret.
    Unknown,
    /// The tokens file cannot be read: nobody is let in.
    FileUnreadable(String),
}

/// How often the server looks at the tokens file's metadata.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = fs::metadata(path).ok()?;
    Some(Stamp {
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ino: m.ino(),
    })
}

struct Loaded {
    /// The entries, or why the file could not be read (fail closed).
    entries: Result<Vec<(TokenEntry, [u8; 32])>, String>,
    stamp: Option<Stamp>,
    checked: Instant,
}

/// The server's view of the tokens file, reloaded when it changes.
pub struct TokenStore {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn load_entries(path: &Path) -> Result<Vec<(TokenEntry, [u8; 32])>, String> {
    let file = TokensFile::load(path).map_err(|e| e.to_string())?;
    file.tokens
        .into_iter()
        .map(|t| {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(&t.sha256, &mut hash).map_err(|_| {
                format!(
                    "the tokens file `{}` is malformed: token `{}` has a sha256 that is not 64 \
                     hex digits",
                    path.display(),
                    t.name
                )
            })?;
            Ok((t, hash))
        })
        .collect()
}

impl TokenStore {
    /// Loads the tokens file; fails if it cannot be read now.
    pub fn open(path: &Path) -> Result<TokenStore, TokenError> {
        TokensFile::load(path)?;
        let entries = load_entries(path).map_err(|reason| TokenError::Malformed {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(TokenStore {
            path: path.to_path_buf(),
            loaded: Mutex::new(Loaded {
                entries: Ok(entries),
                stamp: stamp(path),
                checked: Instant::now(),
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks a presented secret against every entry.
    pub fn check(&self, secret: &str) -> Check {
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let mut loaded = self.loaded.lock();
        if loaded.checked.elapsed() >= RECHECK {
            loaded.checked = Instant::now();
            let now = stamp(&self.path);
            if now != loaded.stamp || now.is_none() {
                loaded.entries = match now {
                    None => Err(format!(
                        "the tokens file `{}` is missing",
                        self.path.display()
                    )),
                    Some(_) => load_entries(&self.path),
                };
                loaded.stamp = now;
            }
        }
        let entries = match &loaded.entries {
            Ok(e) => e,
            Err(reason) => return Check::FileUnreadable(reason.clone()),
        };
        // Compare with every entry, without stopping at a match.
        let mut found: Option<&TokenEntry> = None;
        for (entry, hash) in entries {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        match found {
            Some(e) if e.revoked_at.is_some() => Check::Revoked(e.clone()),
            Some(e) => Check::Valid(e.clone()),
            None => Check::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn create_check_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let (entry, secret) =
            create(&path, "ci", vec![Scope::Ingest], Some("acme".into())).unwrap();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert_eq!(secret.len(), SECRET_PREFIX.len() + 43);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret), "the secret is never stored");
        assert!(text.contains(&entry.sha256));
        let mode = fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let store = TokenStore::open(&path).unwrap();
        assert_eq!(store.check(&secret), Check::Valid(entry.clone()));
        assert_eq!(store.check("slg_wrong"), Check::Unknown);
        assert!(create(&path, "ci", vec![Scope::Query], None).is_err());
        revoke(&path, "ci").unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert!(matches!(store.check(&secret), Check::Revoked(_)));
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(
            Scope::parse_list("query, ingest,query").unwrap(),
            vec![Scope::Ingest, Scope::Query]
        );
        assert!(Scope::parse_list("read").is_err());
        assert!(Scope::parse_list("").is_err());
    }
}
