//! [`FileSource`]: secrets mounted as files (Cloud Run secret volumes, Kubernetes secrets).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{FetchFuture, SecretSource, SecretValue, SecretVersion, SecretsError};

/// Reads secrets from a directory holding one file per secret, named after the secret.
///
/// | version | file |
/// |---|---|
/// | [`Current`](SecretVersion::Current) | `<dir>/<name>` |
/// | [`Previous`](SecretVersion::Previous) | `<dir>/<name>.previous` (optional) |
/// | [`Pending`](SecretVersion::Pending) | `<dir>/<name>.pending` (optional) |
///
/// Mount the version before the current one as `<name>.previous` to accept both during a
/// rotation; without it the store still offers the value it saw before a change. The file's bytes
/// are the secret, exactly (set [`trim_trailing_newline`](Self::trim_trailing_newline) for files
/// written with `echo`). Names must be plain file names: no `/`, `\`, NUL, or leading `.` (so
/// `..` and Kubernetes' `..data` are out of reach). Files larger than the limit (64 KiB, the AWS
/// Secrets Manager maximum, by default) are refused. Files are re-read when the store's TTL
/// expires, which follows a volume that the platform updates in place.
///
/// Reads are small synchronous reads of local (usually in-memory) files.
///
/// ```
/// use guard_secrets::{FileSource, SecretSource, SecretVersion};
///
/// let dir = std::env::temp_dir().join(format!("guard-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("api-key"), "k1\n").unwrap();
/// let src = FileSource::new(&dir).trim_trailing_newline(true);
/// let rt = tokio::runtime::Builder::new_current_thread()
///     .build()
///     .unwrap();
/// let v = rt
///     .block_on(src.fetch("api-key", SecretVersion::Current))
///     .unwrap();
/// assert_eq!(v.expose_bytes(), b"k1");
/// assert!(
///     rt.block_on(src.fetch("../etc/passwd", SecretVersion::Current))
///         .is_err()
/// );
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct FileSource {
    dir: PathBuf,
    max_bytes: u64,
    trim_newline: bool,
}

impl FileSource {
    /// Reads from `dir`.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
            max_bytes: 64 * 1024,
            trim_newline: false,
        }
    }

    /// Refuses files larger than `max` bytes (default 64 KiB; the tests use a smaller bound).
    #[cfg(test)]
    pub(crate) fn max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max;
        self
    }

    /// Drops one trailing `\n` (or `\r\n`) from each file (default: keep the bytes exactly).
    pub fn trim_trailing_newline(mut self, trim: bool) -> Self {
        self.trim_newline = trim;
        self
    }

    /// The file that holds `version` of `name`, or `None` when `name` is not a plain file name.
    pub fn path_for(&self, name: &str, version: SecretVersion) -> Option<PathBuf> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && !name.contains(['/', '\\', '\0'])
            && name.len() <= 255;
        if !plain {
            return None;
        }
        let file = match version {
            SecretVersion::Current => name.to_string(),
            SecretVersion::Previous => format!("{name}.previous"),
            SecretVersion::Pending => format!("{name}.pending"),
        };
        Some(self.dir.join(file))
    }

    fn read(&self, name: &str, version: SecretVersion) -> Result<SecretValue, SecretsError> {
        let path = self
            .path_for(name, version)
            .ok_or_else(|| SecretsError::Permanent {
                name: name.to_string(),
                reason: "not a plain file name".into(),
            })?;
        let io = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => SecretsError::not_found(name),
            std::io::ErrorKind::PermissionDenied => SecretsError::AccessDenied {
                name: name.to_string(),
            },
            kind => SecretsError::transient(name, format!("cannot read the secret file: {kind}")),
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(SecretsError::Permanent {
                name: name.to_string(),
                reason: "not a regular file".into(),
            });
        }
        let too_large = || SecretsError::Permanent {
            name: name.to_string(),
            reason: format!("secret file larger than {} bytes", self.max_bytes),
        };
        if meta.len() > self.max_bytes {
            return Err(too_large());
        }
        // Allocate once, so no partial copies are left behind by reallocation.
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
        file.take(self.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(too_large());
        }
        if self.trim_newline && bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Ok(SecretValue::new(std::mem::take(&mut *bytes)))
    }
}

impl SecretSource for FileSource {
    fn fetch<'a>(&'a self, name: &'a str, version: SecretVersion) -> FetchFuture<'a> {
        let result = self.read(name, version);
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("guard-file-source-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn fetch(src: &FileSource, name: &str, v: SecretVersion) -> Result<SecretValue, SecretsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(src.fetch(name, v))
    }

    #[test]
    fn reads_current_and_previous_files() {
        let d = dir("versions");
        std::fs::write(d.join("hmac"), b"new").unwrap();
        std::fs::write(d.join("hmac.previous"), b"old").unwrap();
        let src = FileSource::new(&d);
        assert!(
            fetch(&src, "hmac", SecretVersion::Current)
                .unwrap()
                .expose_bytes()
                == b"new"
        );
        assert!(
            fetch(&src, "hmac", SecretVersion::Previous)
                .unwrap()
                .expose_bytes()
                == b"old"
        );
        assert_eq!(
            fetch(&src, "hmac", SecretVersion::Pending).unwrap_err(),
            SecretsError::not_found("hmac")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_paths_outside_the_directory() {
        let d = dir("paths");
        let src = FileSource::new(d.join("inner"));
        std::fs::write(d.join("outside"), b"x").unwrap();
        for name in ["../outside", "..", ".", "", "a/b", "a\\b", "..data", "a\0b"] {
            let err = fetch(&src, name, SecretVersion::Current).unwrap_err();
            assert!(!err.is_transient(), "{name:?}");
            assert!(matches!(err, SecretsError::Permanent { .. }), "{name:?}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_oversized_files_and_directories() {
        let d = dir("size");
        std::fs::write(d.join("big"), vec![b'a'; 100]).unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        let src = FileSource::new(&d).max_bytes(99);
        assert!(matches!(
            fetch(&src, "big", SecretVersion::Current),
            Err(SecretsError::Permanent { .. })
        ));
        assert!(matches!(
            fetch(&src, "sub", SecretVersion::Current),
            Err(SecretsError::Permanent { .. })
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn keeps_bytes_exactly_unless_told_to_trim() {
        let d = dir("trim");
        std::fs::write(d.join("k"), b"v\r\n").unwrap();
        assert!(
            fetch(&FileSource::new(&d), "k", SecretVersion::Current)
                .unwrap()
                .expose_bytes()
                == b"v\r\n"
        );
        let trimmed = FileSource::new(&d).trim_trailing_newline(true);
        assert!(
            fetch(&trimmed, "k", SecretVersion::Current)
                .unwrap()
                .expose_bytes()
                == b"v"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
