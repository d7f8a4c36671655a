//! Where an archive lives: an object store and a prefix, opened from a URL,
//! with write-once uploads and bounded retries.
//!
//! | URL | store | configuration |
//! |---|---|---|
//! | `file:///path` | a local (or mounted) directory | none |
//! | `s3://bucket/prefix` | S3 or an S3-compatible server | `AWS_*` variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` (MinIO, Ceph, …), `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint |
//! | `gs://bucket/prefix` | Google Cloud Storage | `GOOGLE_*` variables (e.g. `GOOGLE_SERVICE_ACCOUNT`) |
//! | `az://container/prefix` | Azure Blob Storage | `AZURE_*` variables (e.g. `AZURE_STORAGE_ACCOUNT_NAME`) |
//!
//! Uploads use a conditional put (`PutMode::Create`): an object that
//! already exists is read back and compared, never replaced. S3 uploads
//! carry an `x-amz-checksum-sha256` header, which the server checks, and,
//! when a retention is configured, `x-amz-object-lock-mode` and
//! `x-amz-object-lock-retain-until-date` (sent as the S3 client's default
//! headers on a client used only for uploads, since `object_store` has no
//! per-request header for them).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, HeaderMap, HeaderValue, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions,
    PutPayload, RetryConfig,
};

use crate::error::{ArchiveError, Result};

/// Object Lock retention mode (S3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Nobody, not even the account's root user, can delete or shorten the
    /// retention of an object before its date.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can.
    Governance,
}

impl LockMode {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }
}

/// Per-object retention sent with every upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectLock {
    /// The mode.
    pub mode: LockMode,
    /// How long from the upload each object is retained.
    pub retain: Duration,
}

/// Bounded retries with exponential backoff and jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per operation (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Time limit of one request.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `n + 1` (after `n` failures): exponential,
    /// capped, with "full jitter" in its upper half.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = self
            .first_backoff
            .saturating_mul(
                1u32.checked_shl(failures.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_backoff);
        let jitter = getrandom::u32().unwrap_or(u32::MAX / 2);
        let half = exp / 2;
        half + half.mul_f64(f64::from(jitter) / f64::from(u32::MAX))
    }
}

/// How to open a target.
#[derive(Clone, Debug, Default)]
pub struct TargetOptions {
    /// Send a retention with every upload (S3 only).
    pub lock: Option<ObjectLock>,
    /// Retries and timeouts.
    pub retry: RetryPolicy,
    /// Configuration keys of the object store's builder, applied after the
    /// environment (e.g. `("aws_endpoint", "http://127.0.0.1:9000")`,
    /// `("aws_allow_http", "true")`), for callers that do not configure
    /// through environment variables.
    pub config: Vec<(String, String)>,
}

/// An archive location.
#[derive(Debug)]
pub struct Target {
    url: String,
    scheme: Scheme,
    reader: Arc<dyn ObjectStore>,
    prefix: String,
    local_root: Option<PathBuf>,
    options: TargetOptions,
    retries: std::sync::atomic::AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    File,
    S3,
    Gcs,
    Azure,
}

/// Installs the TLS crypto provider the HTTP client uses (ring, as the rest
/// of sealog); a no-op once installed.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Target {
    /// Opens the archive at `url` (see the module documentation).
    pub fn open(url: &str, options: TargetOptions) -> Result<Target> {
        let bad_url = |why: &str| {
            ArchiveError::config(
                format!("`{url}` is not an archive URL: {why}"),
                "use file:///absolute/path, s3://bucket/prefix, gs://bucket/prefix or \
                 az://container/prefix",
            )
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad_url("it has no scheme"))?;
        let scheme = match scheme {
            "file" => Scheme::File,
            "s3" | "s3a" => Scheme::S3,
            "gs" => Scheme::Gcs,
            "az" | "azure" | "abfs" | "abfss" => Scheme::Azure,
            other => return Err(bad_url(&format!("unknown scheme `{other}`"))),
        };
        if rest.contains(['?', '#', '%']) {
            return Err(bad_url(
                "query strings, fragments and %-escapes are not supported",
            ));
        }
        if options.lock.is_some() && scheme != Scheme::S3 {
            return Err(ArchiveError::config(
                format!("a per-object retention (--retain) can only be sent to S3, not to `{url}`"),
                "set a retention policy on the bucket or container itself (GCS bucket lock, \
                 Azure immutability policy), or archive to an S3 bucket with Object Lock",
            ));
        }
        install_crypto();
        let (reader, prefix, local_root) = match scheme {
            Scheme::File => {
                if !rest.starts_with('/') {
                    return Err(bad_url("a file URL needs an absolute path (file:///path)"));
                }
                let root = PathBuf::from(rest);
                std::fs::create_dir_all(&root).map_err(|source| ArchiveError::Io {
                    op: "create directory",
                    path: root.clone(),
                    source,
                })?;
                let store =
                    object_store::local::LocalFileSystem::new_with_prefix(&root).map_err(|e| {
                        ArchiveError::config(format!("opening `{url}`: {e}"), "check the path")
                    })?;
                let store: Arc<dyn ObjectStore> = Arc::new(store);
                (store, String::new(), Some(root))
            }
            _ => {
                let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad_url("it names no bucket"));
                }
                let prefix = path.trim_matches('/').to_owned();
                let store = build_cloud(scheme, url, &options, None)?;
                (store, prefix, None)
            }
        };
        Ok(Target {
            url: url.to_owned(),
            scheme,
            reader,
            prefix,
            local_root,
            options,
            retries: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The URL it was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.options.retry
    }

    /// Requests retried so far (after a transient failure).
    pub fn retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The configured per-object lock.
    pub fn lock(&self) -> Option<ObjectLock> {
        self.options.lock
    }

    fn path(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn relative(&self, path: &ObjectPath) -> String {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            return full.to_owned();
        }
        full.strip_prefix(&self.prefix)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(full)
            .to_owned()
    }

    /// A store for this round's uploads: with the lock headers (and a
    /// retain-until date counted from now) when a lock is configured.
    pub fn uploader(&self) -> Result<Uploader<'_>> {
        let retain_until = match self.options.lock {
            Some(lock) => {
                let until = time::OffsetDateTime::now_utc()
                    + time::Duration::try_from(lock.retain).unwrap_or(time::Duration::MAX);
                let until = until.replace_nanosecond(0).unwrap_or(until);
                let text = until
                    .format(&time::format_description::well_known::Rfc3339)
                    .map_err(|e| {
                        ArchiveError::config(
                            format!("retention date: {e}"),
                            "use a shorter --retain",
                        )
                    })?;
                Some((lock.mode, text))
            }
            None => None,
        };
        // S3 uploads always name their checksum algorithm: a bucket with a
        // default Object Lock retention refuses uploads without it.
        let store = match self.scheme {
            Scheme::S3 => build_cloud(
                self.scheme,
                &self.url,
                &self.options,
                Some(retain_until.as_ref().map(|(m, t)| (*m, t.as_str()))),
            )?,
            _ => self.reader.clone(),
        };
        Ok(Uploader {
            target: self,
            store,
            retain_until,
        })
    }

    async fn retrying<T, F, Fut>(&self, op: &'static str, name: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        let policy = self.options.retry;
        let mut failures = 0u32;
        loop {
            let attempt = tokio::time::timeout(policy.request_timeout, f())
                .await
                .unwrap_or_else(|_| {
                    Err(object_store::Error::Generic {
                        store: "archive",
                        source: format!(
                            "no answer within {:?} (--request-timeout)",
                            policy.request_timeout
                        )
                        .into(),
                    })
                });
            match attempt {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && failures + 1 < policy.attempts.max(1) => {
                    failures += 1;
                    self.retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let wait = policy.backoff(failures);
                    tracing::warn!(%op, object = %name, error = %e, attempt = failures, ?wait, "archive request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(source) => {
                    return Err(ArchiveError::ObjectStore {
                        op,
                        object: name.to_owned(),
                        url: self.url.clone(),
                        attempts: failures + 1,
                        source: Box::new(source),
                    });
                }
            }
        }
    }

    /// The bytes of object `name`, or `None` if it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>> {
        let path = self.path(name);
        let got = self
            .retrying("download", name, || {
                let path = path.clone();
                let store = self.reader.clone();
                async move {
                    match store.get(&path).await {
                        Ok(r) => r.bytes().await.map(Some),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        Ok(got)
    }

    /// Every object name under `prefix` (relative to the archive), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>> {
        let path = self.path(prefix.trim_end_matches('/'));
        let mut names = self
            .retrying("list", prefix, || {
                let store = self.reader.clone();
                let path = path.clone();
                async move {
                    let mut out = Vec::new();
                    let mut stream = store.list(Some(&path));
                    while let Some(meta) = stream.next().await {
                        let meta = meta?;
                        out.push((meta.location, meta.size));
                    }
                    Ok(out)
                }
            })
            .await?
            .into_iter()
            .map(|(p, size)| (self.relative(&p), size))
            .collect::<Vec<_>>();
        names.sort();
        Ok(names)
    }

    /// Deletes an object (tests and tools only: the archive never deletes).
    pub async fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        self.retrying("delete", name, || {
            let store = self.reader.clone();
            let path = path.clone();
            async move { store.delete(&path).await }
        })
        .await
    }

    /// Writes `bytes` to `name`, replacing whatever is there (tests of
    /// tampering only: the archive itself writes with [`Uploader::put_once`]).
    pub async fn overwrite(&self, name: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(name);
        self.retrying("upload", name, || {
            let store = self.reader.clone();
            let path = path.clone();
            let payload = PutPayload::from(bytes.clone());
            async move { store.put(&path, payload).await.map(|_| ()) }
        })
        .await
    }

    /// Makes a file written to a `file://` archive durable: fsync of the
    /// file and of its directory (the local store itself does not sync).
    fn sync_local(&self, name: &str) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let mut path = root.clone();
        if !self.prefix.is_empty() {
            path.push(&self.prefix);
        }
        path.push(name);
        let io = |op, path: &std::path::Path, source| ArchiveError::Io {
            op,
            path: path.to_owned(),
            source,
        };
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("fsync", &path, e))?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)
                .and_then(|f| f.sync_all())
                .map_err(|e| io("fsync directory", dir, e))?;
        }
        Ok(())
    }
}

/// What a write-once upload found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Written,
    /// An identical object was already there (an interrupted round is
    /// being resumed).
    AlreadyThere,
}

/// Uploads of one round.
#[derive(Debug)]
pub struct Uploader<'a> {
    target: &'a Target,
    store: Arc<dyn ObjectStore>,
    retain_until: Option<(LockMode, String)>,
}

impl Uploader<'_> {
    /// The lock mode and retain-until date sent with each object.
    pub fn retain_until(&self) -> Option<&(LockMode, String)> {
        self.retain_until.as_ref()
    }

    /// Writes `bytes` to `name` unless it exists. An existing object is
    /// read back: identical bytes are [`PutOutcome::AlreadyThere`], other
    /// bytes an [`ArchiveError::Conflict`] naming it.
    pub async fn put_once(&self, name: &str, bytes: Bytes) -> Result<PutOutcome> {
        let target = self.target;
        let path = target.path(name);
        let created = target
            .retrying("upload", name, || {
                let store = self.store.clone();
                let path = path.clone();
                let payload = PutPayload::from(bytes.clone());
                async move {
                    let opts = PutOptions {
                        mode: PutMode::Create,
                        ..PutOptions::default()
                    };
                    match store.put_opts(&path, payload, opts).await {
                        Ok(_) => Ok(true),
                        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        if created {
            target.sync_local(name)?;
            return Ok(PutOutcome::Written);
        }
        let existing = target
            .get(name)
            .await?
            .ok_or_else(|| ArchiveError::Conflict {
                object: name.to_owned(),
                detail: "the store said it exists, then that it does not".into(),
            })?;
        if existing == bytes {
            return Ok(PutOutcome::AlreadyThere);
        }
        Err(ArchiveError::Conflict {
            object: name.to_owned(),
            detail: format!(
                "existing SHA-256 {} ({} bytes), to be written {} ({} bytes)",
                crate::manifest::sha256_hex(&existing),
                existing.len(),
                crate::manifest::sha256_hex(&bytes),
                bytes.len()
            ),
        })
    }
}

/// Errors worth another attempt: the server or the network, not a refusal.
fn is_transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::UnknownConfigurationKey { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::InvalidPath { .. }
    )
}

/// `upload`: `None` for a reading client; `Some(lock)` for an uploading
/// one, with the lock's headers if any.
fn client_options(
    allow_http: Option<String>,
    options: &TargetOptions,
    upload: Option<Option<(LockMode, &str)>>,
) -> Result<ClientOptions> {
    let mut client = ClientOptions::new()
        .with_timeout(options.retry.request_timeout)
        .with_connect_timeout(options.retry.request_timeout.min(Duration::from_secs(10)));
    if let Some(allow) = allow_http {
        client = client.with_config(object_store::ClientConfigKey::AllowHttp, allow);
    }
    if let Some(lock) = upload {
        let mut headers = HeaderMap::new();
        let value = |v: &str| {
            HeaderValue::from_str(v)
                .map_err(|e| ArchiveError::config(format!("upload header: {e}"), "check --retain"))
        };
        // S3 refuses lock parameters (and uploads to a bucket with a
        // default retention) without an integrity check: the client sends
        // `x-amz-checksum-sha256`; this names its algorithm, as the AWS
        // SDKs do (some servers look only for it).
        headers.insert("x-amz-sdk-checksum-algorithm", value("SHA256")?);
        if let Some((mode, until)) = lock {
            headers.insert("x-amz-object-lock-mode", value(mode.as_str())?);
            headers.insert("x-amz-object-lock-retain-until-date", value(until)?);
        }
        client = client.with_default_headers(headers);
    }
    Ok(client)
}

fn unknown_key(key: &str, e: object_store::Error) -> ArchiveError {
    ArchiveError::config(
        format!("unknown object store configuration key `{key}`: {e}"),
        "see the object_store builder's configuration keys (aws_*, google_*, azure_*)",
    )
}

fn build_cloud(
    scheme: Scheme,
    url: &str,
    options: &TargetOptions,
    upload: Option<Option<(LockMode, &str)>>,
) -> Result<Arc<dyn ObjectStore>> {
    // Retries are ours (bounded, with jitter, and reported); the client
    // retries a little on its own within each attempt.
    let retry = RetryConfig {
        max_retries: 1,
        retry_timeout: options.retry.request_timeout,
        ..RetryConfig::default()
    };
    let failed = |e: object_store::Error| {
        ArchiveError::config(
            format!("cannot open the archive at `{url}`: {e}"),
            "check the URL and the credentials in the environment (AWS_*, GOOGLE_*, AZURE_*)",
        )
    };
    let store: Arc<dyn ObjectStore> = match scheme {
        Scheme::S3 => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, Checksum};
            let mut builder = AmazonS3Builder::from_env().with_url(url);
            for (key, value) in &options.config {
                let key: AmazonS3ConfigKey = key.parse().map_err(|e| unknown_key(key, e))?;
                builder = builder.with_config(key, value);
            }
            let allow = builder.get_config_value(&AmazonS3ConfigKey::Client(
                object_store::ClientConfigKey::AllowHttp,
            ));
            Arc::new(
                builder
                    .with_checksum_algorithm(Checksum::SHA256)
                    .with_client_options(client_options(allow, options, upload)?)
                    .with_retry(retry)
                    .build()
                    .map_err(failed)?,
            )
        }
        Scheme::Gcs => {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url);
            for (key, value) in &options.config {
                let key: GoogleConfigKey = key.parse().map_err(|e| unknown_key(key, e))?;
                builder = builder.with_config(key, value);
            }
            let allow = builder.get_config_value(&GoogleConfigKey::Client(
                object_store::ClientConfigKey::AllowHttp,
            ));
            Arc::new(
                builder
                    .with_client_options(client_options(allow, options, None)?)
                    .with_retry(retry)
                    .build()
                    .map_err(failed)?,
            )
        }
        Scheme::Azure => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(url);
            for (key, value) in &options.config {
                let key: AzureConfigKey = key.parse().map_err(|e| unknown_key(key, e))?;
                builder = builder.with_config(key, value);
            }
            let allow = builder.get_config_value(&AzureConfigKey::Client(
                object_store::ClientConfigKey::AllowHttp,
            ));
            Arc::new(
                builder
                    .with_client_options(client_options(allow, options, None)?)
                    .with_retry(retry)
                    .build()
                    .map_err(failed)?,
            )
        }
        Scheme::File => {
            return Err(ArchiveError::config(
                "internal: a file archive has no cloud client",
                "use a file:/// URL",
            ));
        }
    };
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            attempts: 10,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            request_timeout: Duration::from_secs(1),
        };
        for failures in 1..12 {
            let exp = Duration::from_millis(100)
                .saturating_mul(1 << (failures - 1))
                .min(Duration::from_secs(2));
            let b = p.backoff(failures);
            assert!(b >= exp / 2 && b <= exp, "{failures}: {b:?} vs {exp:?}");
        }
    }

    #[test]
    fn urls_without_a_known_scheme_or_with_a_relative_path_are_refused() {
        for url in [
            "/tmp/x",
            "ftp://host/x",
            "file://relative/x",
            "s3:///prefix",
        ] {
            let e = Target::open(url, TargetOptions::default());
            assert!(
                matches!(e, Err(ArchiveError::Config { .. })),
                "{url}: {e:?}"
            );
        }
        let lock = TargetOptions {
            lock: Some(ObjectLock {
                mode: LockMode::Compliance,
                retain: Duration::from_secs(60),
            }),
            ..TargetOptions::default()
        };
        assert!(matches!(
            Target::open("file:///tmp/sealog-archive-lock-test", lock),
            Err(ArchiveError::Config { .. })
        ));
    }
}
