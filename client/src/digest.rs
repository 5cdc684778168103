//! File digests, for the `hash` and `hashType` of a GovStack sign request.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::Digest;

use crate::Error;

/// A hash algorithm of the GovStack contract that esigd accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashAlgorithm {
    /// SHA-256 (`SHA2-256`), the default.
    #[default]
    Sha256,
    /// SHA-384 (`SHA2-384`).
    Sha384,
    /// SHA-512 (`SHA2-512`).
    Sha512,
}

impl HashAlgorithm {
    /// Parses a contract `hashType` (`SHA2-256`; `SHA-256` and `SHA256` are accepted too,
    /// case-insensitive).
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name.to_ascii_uppercase().as_str() {
            "SHA2-256" | "SHA-256" | "SHA256" => Ok(Self::Sha256),
            "SHA2-384" | "SHA-384" | "SHA384" => Ok(Self::Sha384),
            "SHA2-512" | "SHA-512" | "SHA512" => Ok(Self::Sha512),
            _ => Err(Error::UnknownHash(name.to_owned())),
        }
    }

    /// The contract name (`SHA2-256`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA2-256",
            Self::Sha384 => "SHA2-384",
            Self::Sha512 => "SHA2-512",
        }
    }

    /// The digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Hashes everything `reader` yields.
    pub fn digest_reader(self, reader: &mut impl Read) -> std::io::Result<Vec<u8>> {
        match self {
            Self::Sha256 => hash_reader::<sha2::Sha256>(reader),
            Self::Sha384 => hash_reader::<sha2::Sha384>(reader),
            Self::Sha512 => hash_reader::<sha2::Sha512>(reader),
        }
    }

    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn hash_reader<D: Digest>(reader: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut hasher = D::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_vec())
}

/// The digest of the file at `path` (read in 64 KiB blocks, never whole).
pub fn file(path: impl AsRef<Path>, algorithm: HashAlgorithm) -> Result<Vec<u8>, Error> {
    let path = path.as_ref();
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    algorithm
        .digest_reader(&mut f)
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc.txt");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            hex::encode(file(&p, HashAlgorithm::Sha256).unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(file(&p, HashAlgorithm::Sha384).unwrap().len(), 48);
        assert_eq!(
            file(&p, HashAlgorithm::Sha512).unwrap(),
            HashAlgorithm::Sha512.digest(b"abc")
        );
        // Larger than one read block.
        let big = vec![7u8; 200_000];
        std::fs::write(&p, &big).unwrap();
        assert_eq!(
            file(&p, HashAlgorithm::Sha256).unwrap(),
            HashAlgorithm::Sha256.digest(&big)
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            HashAlgorithm::parse("sha2-256").unwrap(),
            HashAlgorithm::Sha256
        );
        assert_eq!(
            HashAlgorithm::parse("SHA-512").unwrap(),
            HashAlgorithm::Sha512
        );
        let e = HashAlgorithm::parse("SHA3-256").unwrap_err().to_string();
        assert!(e.contains("SHA2-256"), "{e}");
        assert!(matches!(
            file("/nonexistent/x", HashAlgorithm::Sha256),
            Err(Error::Io { .. })
        ));
    }
}
