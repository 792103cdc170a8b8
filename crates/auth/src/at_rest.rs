//! Signing keys at rest: a key-encryption key (KEK, `auth.key_encryption_key_file`)
//! seals each private key stored in the database, so a copy of the
//! database alone cannot sign a token.
//!
//! A sealed key is AES-256-GCM (RustCrypto's `aes-gcm`) under the KEK, with
//! a fresh random 96-bit nonce per key, laid out as
//!
//! ```text
//! "cityhub:sealed:v1:" | KEK fingerprint (8 bytes) | nonce (12 bytes) | ciphertext | tag (16 bytes)
//! ```
//!
//! The associated data is the header (prefix and fingerprint) followed by
//! the key's id (`kid`): a sealed value copied onto another key's row, or
//! relabelled with another fingerprint, does not open. A plaintext key is
//! its PKCS#8 DER, which starts with a DER `SEQUENCE` byte and so can never
//! be mistaken for a sealed one. The fingerprint names the KEK a key is
//! sealed under, so a missing or wrong KEK is reported as such rather than
//! as a failed decryption; it is a truncated SHA-256 of the KEK, which
//! reveals nothing usable about it.
//!
//! Key material in memory is wiped on drop: the KEK's bytes and cipher
//! state (`aes-gcm`'s `zeroize` feature), and every opened private key
//! ([`Zeroizing`]). Nothing here prints a key: errors name files, key ids
//! and fingerprints only.

use std::fmt;
use std::io::Write;
use std::path::Path;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The setting that names the KEK file, as error messages spell it.
pub const SETTING: &str = "auth.key_encryption_key_file";

/// Bytes of a key-encryption key (AES-256).
pub const KEK_BYTES: usize = 32;

/// What every sealed value starts with, whatever its format version.
const SEALED_FAMILY: &[u8] = b"cityhub:sealed:";
/// The prefix of format version 1 (AES-256-GCM, layout above).
const SEALED_V1: &[u8] = b"cityhub:sealed:v1:";
/// Bytes of a KEK fingerprint inside a sealed value.
const FINGERPRINT_BYTES: usize = 8;
/// Bytes of an AES-GCM nonce.
const NONCE_BYTES: usize = 12;
/// Bytes of an AES-GCM tag.
const TAG_BYTES: usize = 16;
/// Domain separation of the fingerprint hash.
const FINGERPRINT_CONTEXT: &[u8] = b"cityhub key-encryption key fingerprint v1\0";

/// Errors of key-encryption keys and of sealed signing keys. None carries
/// key material.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// The KEK file cannot be read or written.
    #[error("key-encryption key file {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// Why (in the message itself, so a log line shows it).
        error: std::io::Error,
    },
    /// The KEK file does not hold a key.
    #[error(
        "key-encryption key file {path} does not hold a key: expected 32 random bytes written as 64 hex digits or as base64 (make one with `cityhub keys kek generate --out FILE`)"
    )]
    Format {
        /// The file.
        path: String,
    },
    /// `cityhub keys kek generate` never overwrites a file.
    #[error(
        "{path} already exists: a key-encryption key is never overwritten (choose another file)"
    )]
    Exists {
        /// The file.
        path: String,
    },
    /// Encryption refused the input (it cannot for a key's few bytes).
    #[error("signing key {kid} could not be sealed")]
    Seal {
        /// The key's id.
        kid: String,
    },
    /// The operating system gave no randomness.
    #[error("no randomness for a key-encryption key or nonce")]
    Randomness,
    /// A sealed key, but no KEK to open it.
    #[error(
        "signing key {kid} is stored encrypted under key-encryption key {sealed_with}, and no key-encryption key is configured: set {SETTING} to the file of that key"
    )]
    Missing {
        /// The key's id.
        kid: String,
        /// The KEK it is sealed under.
        sealed_with: KekFingerprint,
    },
    /// A sealed key, under another KEK than the one in use.
    #[error(
        "signing key {kid} is stored encrypted under key-encryption key {sealed_with}, not under the key-encryption key in use ({in_use}): set {SETTING} to the file of key {sealed_with} (`cityhub keys kek fingerprint FILE` tells a file's key)"
    )]
    WrongKek {
        /// The key's id.
        kid: String,
        /// The KEK it is sealed under.
        sealed_with: KekFingerprint,
        /// The KEK that was tried.
        in_use: KekFingerprint,
    },
    /// The right KEK, but the value does not authenticate.
    #[error(
        "signing key {kid} does not decrypt under key-encryption key {kek}: the stored value was altered or belongs to another key"
    )]
    Inauthentic {
        /// The key's id.
        kid: String,
        /// The KEK that was tried.
        kek: KekFingerprint,
    },
    /// A sealed value of a format this version does not read.
    #[error(
        "signing key {kid} is stored in a sealed form this version of cityhub does not read (written by a newer version?)"
    )]
    UnknownForm {
        /// The key's id.
        kid: String,
    },
    /// The keys live in `auth.key_file`, which a KEK does not apply to.
    #[error(
        "auth.key_file is set: the signing keys live in that file (mode 0600), and {SETTING} applies to keys stored in the database only"
    )]
    KeysInFile,
}

/// A short public name of a KEK: the first 8 bytes of a SHA-256 of it, in
/// hex. Stored in every value sealed under it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KekFingerprint([u8; FINGERPRINT_BYTES]);

impl fmt::Display for KekFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KekFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekFingerprint({self})")
    }
}

/// The form a stored private key is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredForm {
    /// PKCS#8 DER as it is (no KEK was set when it was written): anything
    /// without the sealed prefix; the keyring checks that it is a key.
    Plain,
    /// Sealed under the KEK with this fingerprint.
    Sealed(KekFingerprint),
    /// Sealed in a form this version does not read.
    Unknown,
}

impl StoredForm {
    /// Which form `stored` is in.
    pub fn of(stored: &[u8]) -> Self {
        if !stored.starts_with(SEALED_FAMILY) {
            return Self::Plain;
        }
        match stored.strip_prefix(SEALED_V1) {
            Some(rest) if rest.len() >= FINGERPRINT_BYTES + NONCE_BYTES + TAG_BYTES => {
                let mut fingerprint = [0; FINGERPRINT_BYTES];
                fingerprint.copy_from_slice(&rest[..FINGERPRINT_BYTES]);
                Self::Sealed(KekFingerprint(fingerprint))
            }
            _ => Self::Unknown,
        }
    }
}

/// A key-encryption key: AES-256-GCM over the private keys stored in the
/// database. Its bytes are wiped from memory when it is dropped, and it is
/// never printed (`Debug` shows its fingerprint).
#[derive(Clone)]
pub struct KeyEncryptionKey {
    cipher: Aes256Gcm,
    fingerprint: KekFingerprint,
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEncryptionKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, KekError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    rand::rngs::OsRng
        .try_fill_bytes(bytes.as_mut())
        .map_err(|_| KekError::Randomness)?;
    Ok(bytes)
}

/// The 32 bytes a KEK file's text holds (hex or base64), if it holds them.
fn decode_key_text(text: &str) -> Option<Zeroizing<[u8; KEK_BYTES]>> {
    let text = text.trim();
    let bytes = Zeroizing::new(if text.len() == 2 * KEK_BYTES {
        hex::decode(text).ok()?
    } else {
        STANDARD
            .decode(text)
            .or_else(|_| STANDARD_NO_PAD.decode(text))
            .ok()?
    });
    let mut key = Zeroizing::new([0u8; KEK_BYTES]);
    if bytes.len() != KEK_BYTES {
        return None;
    }
    key.copy_from_slice(&bytes);
    Some(key)
}

impl KeyEncryptionKey {
    /// The KEK made of these 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEK_BYTES]) -> Self {
        let digest = Sha256::new()
            .chain_update(FINGERPRINT_CONTEXT)
            .chain_update(bytes)
            .finalize();
        let mut fingerprint = [0; FINGERPRINT_BYTES];
        fingerprint.copy_from_slice(&digest[..FINGERPRINT_BYTES]);
        Self {
            cipher: Aes256Gcm::new(&(*bytes).into()),
            fingerprint: KekFingerprint(fingerprint),
        }
    }

    /// Reads the KEK of `path`: 32 bytes as 64 hex digits or as base64
    /// (surrounding white space ignored). The error names the file, never
    /// its content.
    pub fn read(path: &Path) -> Result<Self, KekError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|error| KekError::Io {
            path: path.display().to_string(),
            error,
        })?);
        let key = decode_key_text(&text).ok_or_else(|| KekError::Format {
            path: path.display().to_string(),
        })?;
        Ok(Self::from_bytes(&key))
    }

    /// Makes a new random KEK and writes it to `path` (64 hex digits and a
    /// newline), readable and writable by the owner only. An existing file
    /// is never overwritten: losing a KEK loses every key sealed under it.
    pub fn generate_file(path: &Path) -> Result<Self, KekError> {
        let io = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KekError::Exists {
                    path: path.display().to_string(),
                }
            } else {
                KekError::Io {
                    path: path.display().to_string(),
                    error: source,
                }
            }
        };
        let key = random::<KEK_BYTES>()?;
        let mut text = Zeroizing::new(hex::encode(key.as_ref()));
        text.push('\n');
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self::from_bytes(&key))
    }

    /// This KEK's fingerprint.
    pub fn fingerprint(&self) -> KekFingerprint {
        self.fingerprint
    }

    fn header(&self) -> Vec<u8> {
        let mut header = Vec::with_capacity(SEALED_V1.len() + FINGERPRINT_BYTES);
        header.extend_from_slice(SEALED_V1);
        header.extend_from_slice(&self.fingerprint.0);
        header
    }

    /// Seals the PKCS#8 DER of key `kid` for storage, with a fresh random
    /// nonce; the result opens only under this KEK and for this `kid`.
    pub fn seal(&self, kid: &str, private_der: &[u8]) -> Result<Vec<u8>, KekError> {
        let header = self.header();
        let nonce = random::<NONCE_BYTES>()?;
        let aad = [header.as_slice(), kid.as_bytes()].concat();
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::<Aes256Gcm>::from(*nonce),
                Payload {
                    msg: private_der,
                    aad: &aad,
                },
            )
            .map_err(|_| KekError::Seal {
                kid: kid.to_owned(),
            })?;
        Ok([header.as_slice(), nonce.as_slice(), &ciphertext].concat())
    }

    /// Opens the sealed value stored for key `kid`: its PKCS#8 DER.
    pub fn open(&self, kid: &str, stored: &[u8]) -> Result<Zeroizing<Vec<u8>>, KekError> {
        match StoredForm::of(stored) {
            StoredForm::Sealed(fingerprint) if fingerprint == self.fingerprint => {}
            StoredForm::Sealed(sealed_with) => {
                return Err(KekError::WrongKek {
                    kid: kid.to_owned(),
                    sealed_with,
                    in_use: self.fingerprint,
                });
            }
            StoredForm::Unknown | StoredForm::Plain => {
                return Err(KekError::UnknownForm {
                    kid: kid.to_owned(),
                });
            }
        }
        let header_len = SEALED_V1.len() + FINGERPRINT_BYTES;
        let (header, rest) = stored.split_at(header_len);
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let mut nonce_bytes = [0u8; NONCE_BYTES];
        nonce_bytes.copy_from_slice(nonce);
        let aad = [header, kid.as_bytes()].concat();
        self.cipher
            .decrypt(
                &Nonce::<Aes256Gcm>::from(nonce_bytes),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KekError::Inauthentic {
                kid: kid.to_owned(),
                kek: self.fingerprint,
            })
    }
}

/// The private key of `kid` in the form to store it: sealed under `kek`,
/// or its PKCS#8 DER as it is when no KEK is set.
pub fn store(
    kek: Option<&KeyEncryptionKey>,
    kid: &str,
    private_der: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KekError> {
    match kek {
        Some(kek) => kek.seal(kid, private_der).map(Zeroizing::new),
        None => Ok(Zeroizing::new(private_der.to_vec())),
    }
}

/// The PKCS#8 DER of key `kid` from its stored form: a plaintext key as it
/// is, a sealed one opened under `kek` (an error without one, or under
/// another KEK than the one it was sealed with).
pub fn open(
    kek: Option<&KeyEncryptionKey>,
    kid: &str,
    stored: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KekError> {
    match (StoredForm::of(stored), kek) {
        (StoredForm::Plain, _) => Ok(Zeroizing::new(stored.to_vec())),
        (StoredForm::Unknown, _) => Err(KekError::UnknownForm {
            kid: kid.to_owned(),
        }),
        (StoredForm::Sealed(sealed_with), None) => Err(KekError::Missing {
            kid: kid.to_owned(),
            sealed_with,
        }),
        (StoredForm::Sealed(_), Some(kek)) => kek.open(kid, stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyMaterial;

    fn kek(byte: u8) -> KeyEncryptionKey {
        KeyEncryptionKey::from_bytes(&[byte; KEK_BYTES])
    }

    fn temp_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("cityhub-kek-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn seals_and_opens_a_key_without_leaving_it_in_the_stored_value() {
        let key = KeyMaterial::generate().expect("key");
        let kek = kek(7);
        let sealed = kek.seal(&key.kid, &key.private_der).expect("seal");
        assert!(sealed.starts_with(SEALED_V1));
        assert_eq!(
            StoredForm::of(&sealed),
            StoredForm::Sealed(kek.fingerprint())
        );
        assert_eq!(
            sealed.len(),
            SEALED_V1.len() + FINGERPRINT_BYTES + NONCE_BYTES + key.private_der.len() + TAG_BYTES
        );
        // The Ed25519 seed is the DER's last 32 bytes.
        let seed = &key.private_der[key.private_der.len() - 32..];
        assert!(!sealed.windows(seed.len()).any(|w| w == seed));
        assert_eq!(
            *kek.open(&key.kid, &sealed).expect("open"),
            *key.private_der
        );
        assert_eq!(
            *open(Some(&kek), &key.kid, &sealed).expect("open"),
            *key.private_der
        );
        // A fresh nonce per seal: the same key never seals alike twice.
        assert_ne!(sealed, kek.seal(&key.kid, &key.private_der).expect("seal"));
    }

    #[test]
    fn a_wrong_or_missing_kek_is_named_by_fingerprint() {
        let key = KeyMaterial::generate().expect("key");
        let (right, wrong) = (kek(1), kek(2));
        let sealed = right.seal(&key.kid, &key.private_der).expect("seal");
        match wrong.open(&key.kid, &sealed) {
            Err(KekError::WrongKek {
                sealed_with,
                in_use,
                ..
            }) => {
                assert_eq!(sealed_with, right.fingerprint());
                assert_eq!(in_use, wrong.fingerprint());
            }
            other => panic!("expected WrongKek, got {other:?}"),
        }
        assert!(matches!(
            open(None, &key.kid, &sealed),
            Err(KekError::Missing { sealed_with, .. }) if sealed_with == right.fingerprint()
        ));
        // A wrong key that claims the right fingerprint still fails.
        let mut forged = sealed.clone();
        let at = SEALED_V1.len();
        forged[at..at + FINGERPRINT_BYTES].copy_from_slice(&wrong.fingerprint().0);
        assert!(matches!(
            wrong.open(&key.kid, &forged),
            Err(KekError::Inauthentic { .. })
        ));
    }

    #[test]
    fn a_sealed_value_does_not_open_for_another_kid() {
        let (a, b) = (
            KeyMaterial::generate().expect("key"),
            KeyMaterial::generate().expect("key"),
        );
        let kek = kek(3);
        let sealed_a = kek.seal(&a.kid, &a.private_der).expect("seal");
        assert!(matches!(
            kek.open(&b.kid, &sealed_a),
            Err(KekError::Inauthentic { kid, .. }) if kid == b.kid
        ));
    }

    #[test]
    fn any_altered_byte_fails_authentication() {
        let key = KeyMaterial::generate().expect("key");
        let kek = kek(4);
        let sealed = kek.seal(&key.kid, &key.private_der).expect("seal");
        let header = SEALED_V1.len() + FINGERPRINT_BYTES;
        for at in header..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[at] ^= 0x01;
            assert!(
                matches!(
                    kek.open(&key.kid, &tampered),
                    Err(KekError::Inauthentic { .. })
                ),
                "byte {at} altered"
            );
        }
        let mut truncated = sealed.clone();
        truncated.truncate(header + NONCE_BYTES + TAG_BYTES - 1);
        assert_eq!(StoredForm::of(&truncated), StoredForm::Unknown);
        assert!(matches!(
            kek.open(&key.kid, &truncated),
            Err(KekError::UnknownForm { .. })
        ));
    }

    #[test]
    fn plaintext_and_sealed_values_are_told_apart() {
        let key = KeyMaterial::generate().expect("key");
        assert_eq!(StoredForm::of(&key.private_der), StoredForm::Plain);
        assert_eq!(
            *open(None, &key.kid, &key.private_der).expect("plain"),
            *key.private_der
        );
        assert_eq!(
            *store(None, &key.kid, &key.private_der).expect("plain"),
            *key.private_der
        );
        let kek = kek(5);
        let stored = store(Some(&kek), &key.kid, &key.private_der).expect("sealed");
        assert_eq!(
            StoredForm::of(&stored),
            StoredForm::Sealed(kek.fingerprint())
        );
        assert_eq!(
            StoredForm::of(b"cityhub:sealed:v9:whatever"),
            StoredForm::Unknown
        );
        assert!(matches!(
            open(Some(&kek), &key.kid, b"cityhub:sealed:v9:whatever"),
            Err(KekError::UnknownForm { .. })
        ));
    }

    #[test]
    fn kek_files_are_generated_owner_only_never_overwritten_and_read_back() {
        let dir = temp_dir();
        let path = dir.join("kek");
        let made = KeyEncryptionKey::generate_file(&path).expect("generate");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.trim().len(), 64);
        assert!(text.trim().bytes().all(|b| b.is_ascii_hexdigit()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let read = KeyEncryptionKey::read(&path).expect("read");
        assert_eq!(read.fingerprint(), made.fingerprint());
        let key = KeyMaterial::generate().expect("key");
        let sealed = made.seal(&key.kid, &key.private_der).expect("seal");
        assert_eq!(
            *read.open(&key.kid, &sealed).expect("open"),
            *key.private_der
        );
        assert!(matches!(
            KeyEncryptionKey::generate_file(&path),
            Err(KekError::Exists { .. })
        ));
        assert_eq!(
            KeyEncryptionKey::read(&path)
                .expect("unchanged")
                .fingerprint(),
            made.fingerprint()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn kek_files_may_be_hex_or_base64_and_errors_never_show_the_content() {
        let dir = temp_dir();
        let path = dir.join("kek");
        let bytes = [9u8; KEK_BYTES];
        for text in [
            hex::encode(bytes),
            format!("  {}\n", hex::encode_upper(bytes)),
            STANDARD.encode(bytes),
            STANDARD_NO_PAD.encode(bytes),
        ] {
            std::fs::write(&path, &text).expect("write");
            assert_eq!(
                KeyEncryptionKey::read(&path).expect("read").fingerprint(),
                kek(9).fingerprint(),
                "{text:?}"
            );
        }
        for secretish in ["hunter2-not-a-key", &hex::encode([9u8; 16]), ""] {
            std::fs::write(&path, secretish).expect("write");
            let error = KeyEncryptionKey::read(&path).expect_err("malformed");
            assert!(matches!(error, KekError::Format { .. }));
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(
                secretish.is_empty() || !message.contains(secretish),
                "{message}"
            );
        }
        let missing = dir.join("missing");
        assert!(matches!(
            KeyEncryptionKey::read(&missing),
            Err(KekError::Io { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fingerprints_and_debug_never_show_the_key() {
        let bytes = [0xabu8; KEK_BYTES];
        let kek = KeyEncryptionKey::from_bytes(&bytes);
        let shown = format!("{kek:?} {}", kek.fingerprint());
        assert!(!shown.contains(&hex::encode(bytes)[..16]), "{shown}");
        assert_eq!(kek.fingerprint().to_string().len(), 2 * FINGERPRINT_BYTES);
        assert_ne!(kek.fingerprint(), self::kek(0xac).fingerprint());
    }
}
