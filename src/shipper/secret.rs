//! The Datadog API key: where it comes from, how it is re-read, and how it stays out of output.
//!
//! [`ApiKey`] never shows its value through `Debug` or `Display`; the only way to the bytes is
//! [`ApiKey::header_value`], which builds a header marked sensitive. [`KeySource`] follows the
//! key file (a re-read every 2 s), re-reads it on demand (after the intake rejects the key),
//! and keeps the old key when a new read fails, so a Secret update never leaves sidelog
//! keyless.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::header::HeaderValue;
use tokio_util::sync::CancellationToken;

use crate::delivery::DeliveryState;

/// How often a missing key file is looked for while waiting for it.
const KEY_WAIT_POLL: Duration = Duration::from_millis(500);

/// Environment variable used when no key file is configured.
pub const API_KEY_ENV: &str = "DD_API_KEY";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read API key file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("API key file {path} is empty")]
    Empty { path: PathBuf },
    #[error("no API key: set datadog.api_key_file or the {API_KEY_ENV} environment variable")]
    Missing,
    #[error("API key from {origin} contains characters not allowed in an HTTP header")]
    NotAHeader { origin: String },
}

/// An API key whose value is never printed.
#[derive(Clone)]
pub struct ApiKey {
    header: HeaderValue,
    len: usize,
}

impl ApiKey {
    /// Builds a key from raw text; whitespace and line endings around it are trimmed.
    pub fn parse(raw: &str, origin: &str) -> Result<Option<ApiKey>, SecretError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let mut header = HeaderValue::from_str(trimmed).map_err(|_| SecretError::NotAHeader {
            origin: origin.to_string(),
        })?;
        header.set_sensitive(true);
        Ok(Some(ApiKey {
            header,
            len: trimmed.len(),
        }))
    }

    /// The value for the `DD-API-KEY` header (marked sensitive, so hyper never logs it).
    pub fn header_value(&self) -> HeaderValue {
        self.header.clone()
    }

    /// Whether `candidate` is this key (for the built-in intake).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let ours = self.header.as_bytes();
        // Constant-time in the length of our key, so timing does not reveal a prefix.
        ours.len() == candidate.len()
            && ours
                .iter()
                .zip(candidate)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl PartialEq for ApiKey {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.header.as_bytes())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(<redacted, {} bytes>)", self.len)
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads a key file, trimming whitespace; an empty file is an error naming the path.
pub fn read_key_file(path: &Path) -> Result<ApiKey, SecretError> {
    let raw = std::fs::read_to_string(path).map_err(|source| SecretError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    ApiKey::parse(&raw, &path.display().to_string())?.ok_or_else(|| SecretError::Empty {
        path: path.to_path_buf(),
    })
}

/// A key written out in a configuration (the Datadog Agent's `api_key`, or an additional
/// endpoint's in `DD_LOGS_CONFIG_ADDITIONAL_ENDPOINTS`), with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct InlineKey {
    pub key: ApiKey,
    /// Where it was given (a setting's name, never the key).
    pub origin: String,
}

/// Where the key comes from, and the key currently in use.
pub struct KeySource {
    path: Option<PathBuf>,
    /// Where a key that is not in a file came from.
    given_in: String,
    keys: RwLock<Keys>,
}

/// The keys a [`KeySource`] knows of.
struct Keys {
    /// The key requests carry.
    current: ApiKey,
    /// The last key the intake accepted: what a key file that turns bad falls back to.
    accepted: Option<ApiKey>,
    /// A key from the file that the intake rejected while another had been accepted: not
    /// taken from the file again until the file says something else.
    rejected: Option<ApiKey>,
    /// The file was found empty or unreadable, and a warning said so (once per spell).
    unusable_said: bool,
}

/// What a rejection of the key changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    /// Nothing better is known: the rejected key stays.
    None,
    /// The file holds another key (the Secret was rotated): it is used now.
    FromFile,
    /// The file's key is rejected and an earlier one was accepted: that one is used again
    /// (a half-written or not yet valid key file).
    BackToAccepted,
}

impl KeySource {
    /// Loads the key from `path`; without one, the key given in the configuration, or else
    /// `DD_API_KEY`.
    pub fn load(
        path: Option<&Path>,
        inline: Option<&InlineKey>,
    ) -> Result<Arc<KeySource>, SecretError> {
        let (path, given_in, key) = match (path, inline) {
            (Some(path), _) => (
                Some(path.to_path_buf()),
                String::new(),
                read_key_file(path)?,
            ),
            (None, Some(inline)) => (None, inline.origin.clone(), inline.key.clone()),
            (None, None) => {
                let raw = std::env::var(API_KEY_ENV).map_err(|_| SecretError::Missing)?;
                let key = ApiKey::parse(&raw, API_KEY_ENV)?.ok_or(SecretError::Missing)?;
                (None, format!("${API_KEY_ENV}"), key)
            }
        };
        Ok(Arc::new(KeySource {
            path,
            given_in,
            keys: RwLock::new(Keys {
                current: key,
                accepted: None,
                rejected: None,
                unusable_said: false,
            }),
        }))
    }

    /// A human description of where the key comes from (never the key).
    pub fn origin(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => self.given_in.clone(),
        }
    }

    pub fn current(&self) -> ApiKey {
        self.read().current.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Keys> {
        self.keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The intake accepted a request carrying `used`: it is the key to fall back to.
    pub fn accepted(&self, used: &ApiKey) {
        if self.read().accepted.as_ref() == Some(used) {
            return;
        }
        self.write().accepted = Some(used.clone());
    }

    /// The intake rejected a request carrying `used`: the file is read again (the Secret
    /// may have been rotated); if it still holds the rejected key and another key was
    /// accepted before, that key is used again.
    pub fn rejected(&self, used: &ApiKey) -> KeyChange {
        let fresh = self.path.as_deref().map(read_key_file);
        let mut keys = self.write();
        if let Some(Ok(fresh)) = fresh
            && fresh != *used
            && keys.rejected.as_ref() != Some(&fresh)
        {
            keys.current = fresh;
            return KeyChange::FromFile;
        }
        match keys.accepted.clone() {
            Some(accepted) if accepted != *used && self.path.is_some() => {
                keys.rejected = Some(used.clone());
                keys.current = accepted;
                KeyChange::BackToAccepted
            }
            _ => KeyChange::None,
        }
    }

    /// As [`KeySource::load`], but a missing or empty key file is waited for, up to `wait`
    /// (a Secret can be mounted after the container starts). While waiting, the
    /// run's delivery state says so, and with it `/status` and the `api_key_missing` gauge.
    pub async fn load_waiting(
        path: Option<&Path>,
        inline: Option<&InlineKey>,
        wait: Duration,
        delivery: &DeliveryState,
    ) -> Result<Arc<KeySource>, SecretError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match KeySource::load(path, inline) {
                Ok(keys) => {
                    delivery.set_key_missing(false);
                    return Ok(keys);
                }
                Err(e @ (SecretError::Unreadable { .. } | SecretError::Empty { .. }))
                    if tokio::time::Instant::now() < deadline =>
                {
                    // Said when the wait begins: the state was not missing before.
                    if !delivery.set_key_missing(true) {
                        tracing::warn!(error = %e, wait_secs = wait.as_secs(), "waiting for the API key file (datadog.api_key_wait_secs)");
                    }
                    tokio::time::sleep(KEY_WAIT_POLL).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Follows the key file: re-reads it every `poll` until `stop`. The kubelet updates a
    /// mounted Secret by swapping a `..data` symlink, a minute or more after the Secret
    /// changed, so a re-read every few seconds adds nothing that matters, where a watch would
    /// cost a thread and an inotify instance per key file (a watch on the file itself would
    /// miss the swap anyway). A rejected key is re-read at once as well.
    pub fn follow(self: &Arc<Self>, poll: Duration, stop: CancellationToken) {
        if self.path.is_none() {
            return;
        }
        let polled = self.clone();
        crate::spawn_every(poll, stop, move || polled.refresh());
    }

    /// Re-reads the key and says so when it changed. An empty or unreadable file keeps the
    /// key in use, with one warning until the file holds a key again; a key the intake
    /// rejected is not taken up again.
    fn refresh(&self) {
        match self.reload() {
            Ok(true) => {
                tracing::info!(origin = %self.origin(), "API key changed; using the new one")
            }
            Ok(false) => {}
            Err(e) => {
                let mut keys = self.write();
                if !std::mem::replace(&mut keys.unusable_said, true) {
                    tracing::warn!(error = %e, "cannot use the API key file; keeping the key in use until it holds one again");
                }
            }
        }
    }

    /// Re-reads the key file. Returns whether the key in use changed; on a failed read the
    /// old key stays in use.
    pub fn reload(&self) -> Result<bool, SecretError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let fresh = read_key_file(path)?;
        let mut keys = self.write();
        if std::mem::replace(&mut keys.unusable_said, false) {
            tracing::info!(origin = %self.origin(), "the API key file holds a key again");
        }
        if keys.current == fresh || keys.rejected.as_ref() == Some(&fresh) {
            return Ok(false);
        }
        keys.current = fresh;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_trimmed_and_never_printed() {
        let key = ApiKey::parse("  abc123secret\n", "test")
            .expect("valid")
            .expect("non-empty");
        assert_eq!(key.len(), 12);
        assert!(key.matches(b"abc123secret"));
        assert!(!key.matches(b"abc123secreT"));
        let shown = format!("{key:?} {key}");
        assert!(!shown.contains("abc123secret"), "{shown}");
        assert!(format!("{:?}", key.header_value()).contains("Sensitive"));
    }

    #[test]
    fn empty_and_missing_files_name_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n  \n").expect("write");
        let err = read_key_file(&empty).expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");
        let missing = dir.path().join("missing");
        let err = read_key_file(&missing).expect_err("missing");
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn reload_keeps_old_key_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "one").expect("write");
        let source = KeySource::load(Some(&path), None).expect("load");
        std::fs::write(&path, "two\n").expect("write");
        assert!(source.reload().expect("reload"));
        assert!(source.current().matches(b"two"));
        std::fs::remove_file(&path).expect("remove");
        assert!(source.reload().is_err());
        assert!(source.current().matches(b"two"));
    }

    fn key(text: &str) -> ApiKey {
        ApiKey::parse(text, "test")
            .expect("valid")
            .expect("not empty")
    }

    #[test]
    fn a_half_written_key_is_rejected_once_and_the_accepted_one_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "good-key-0123").expect("write");
        let source = KeySource::load(Some(&path), None).expect("load");
        source.accepted(&key("good-key-0123"));
        std::fs::write(&path, "good-k").expect("write");
        assert!(source.reload().expect("reload"), "a changed file is tried");
        assert_eq!(source.rejected(&key("good-k")), KeyChange::BackToAccepted);
        assert!(source.current().matches(b"good-key-0123"));
        // The rejected content is not taken up again while the file keeps it.
        assert!(!source.reload().expect("reload"));
        assert!(source.current().matches(b"good-key-0123"));
        // A rotation to a new key is.
        std::fs::write(&path, "new-key-4567").expect("write");
        assert!(source.reload().expect("reload"));
        assert!(source.current().matches(b"new-key-4567"));
    }

    #[test]
    fn a_rejected_key_takes_a_rotated_file_key_or_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "old").expect("write");
        let source = KeySource::load(Some(&path), None).expect("load");
        source.accepted(&key("old"));
        // Revoked, and the Secret not updated yet: nothing better is known.
        assert_eq!(source.rejected(&key("old")), KeyChange::None);
        assert!(source.current().matches(b"old"));
        std::fs::write(&path, "rotated").expect("write");
        assert_eq!(source.rejected(&key("old")), KeyChange::FromFile);
        assert!(source.current().matches(b"rotated"));
        // Never accepted anything: a rejected file key stays (nothing to go back to).
        let fresh = KeySource::load(Some(&path), None).expect("load");
        assert_eq!(fresh.rejected(&key("rotated")), KeyChange::None);
    }
}
