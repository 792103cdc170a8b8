//! Signing keys kept in a file instead of the database: JSON, written
//! atomically (a temporary file renamed over the old one) with mode 0600,
//! so private key material is readable by the hub's user only.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::KeyMaterial;

/// Errors reading or writing a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file's content is not a key list.
    #[error("key file {0} is not a cityhub key file")]
    Format(String),
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    private_der: Zeroizing<String>,
    public_x: String,
    retired: bool,
}

/// Reads every key of `path`, oldest first; a missing file has none.
pub fn read(path: &Path) -> Result<Vec<KeyMaterial>, KeyFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(KeyFileError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    };
    let stored: Vec<StoredKey> = serde_json::from_str(&text)
        .map_err(|_| KeyFileError::Format(path.display().to_string()))?;
    stored
        .into_iter()
        .map(|k| {
            Ok(KeyMaterial {
                private_der: Zeroizing::new(
                    STANDARD
                        .decode(k.private_der.as_bytes())
                        .map_err(|_| KeyFileError::Format(path.display().to_string()))?,
                ),
                kid: k.kid,
                public_x: k.public_x,
                retired: k.retired,
            })
        })
        .collect()
}

/// Replaces `path` with `keys`, readable and writable by the owner only.
pub fn write(path: &Path, keys: &[KeyMaterial]) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let stored: Vec<StoredKey> = keys
        .iter()
        .map(|k| StoredKey {
            kid: k.kid.clone(),
            private_der: Zeroizing::new(STANDARD.encode(k.private_der.as_slice())),
            public_x: k.public_x.clone(),
            retired: k.retired,
        })
        .collect();
    let json = Zeroizing::new(
        serde_json::to_vec_pretty(&stored)
            .map_err(|_| KeyFileError::Format(path.display().to_string()))?,
    );
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(&json).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_owner_only_permissions() {
        let dir = std::env::temp_dir().join(format!("cityhub-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("keys.json");
        assert!(read(&path).expect("missing is empty").is_empty());
        let keys = vec![
            KeyMaterial::generate().expect("key"),
            KeyMaterial {
                retired: true,
                ..KeyMaterial::generate().expect("key")
            },
        ];
        write(&path, &keys).expect("write");
        assert_eq!(read(&path).expect("read"), keys);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::write(&path, "nonsense").expect("write");
        assert!(matches!(read(&path), Err(KeyFileError::Format(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
