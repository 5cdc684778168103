//! Scrape-time readings for the operator's alerts that come from files rather than from the
//! running service: the `notAfter` of the certificates esigd signs or serves with, the
//! `nextUpdate` of the e-Service client CAs' CRLs (`tls.client_crl`), and the store's disk use.
//!
//! The files are read at every scrape (a few small PEM files and one directory listing), so a
//! renewed certificate or CRL shows at the next scrape. A file that is absent or does not parse
//! is left out of the exposition (and `esigd check` reports it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use der::{Decode, DecodePem};
use esigd_web::metrics::{Expiries, Expiry, Metrics, StoreDisk};
use rustls::pki_types::CertificateRevocationListDer;
use rustls::pki_types::pem::PemObject;
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;

use crate::ceremony::PkiFiles;
use crate::config::Config;

/// Installs the expiry and store-disk probes of `metrics` for the files named by `cfg`.
pub fn install(metrics: &Metrics, cfg: &Config) {
    let files = PkiFiles::of(cfg);
    let certificates: Arc<[(&'static str, PathBuf)]> = Arc::new([
        ("ca", files.ca),
        ("tsa", files.tsa),
        ("ocsp", files.ocsp),
        ("tls_server", cfg.data_path(&cfg.tls.cert)),
    ]);
    let client_crl = cfg.tls.client_crl.as_ref().map(|p| cfg.data_path(p));
    metrics.set_expiry_probe(Box::new(move || Expiries {
        certificates: certificates
            .iter()
            .filter_map(|(name, path)| {
                certificate_not_after(path).map(|unix_seconds| Expiry { name, unix_seconds })
            })
            .collect(),
        crls: client_crl
            .as_deref()
            .and_then(earliest_next_update)
            .map(|unix_seconds| Expiry {
                name: "tls_client",
                unix_seconds,
            })
            .into_iter()
            .collect(),
    }));
    let store = cfg.store_dir();
    metrics.set_store_disk_probe(Box::new(move || store_disk(&store)));
}

/// The `notAfter` (Unix seconds) of the first certificate in a PEM file.
pub fn certificate_not_after(path: &Path) -> Option<f64> {
    let pem = std::fs::read(path).ok()?;
    let cert = Certificate::from_pem(&pem).ok()?;
    Some(
        cert.tbs_certificate
            .validity
            .not_after
            .to_unix_duration()
            .as_secs_f64(),
    )
}

/// The earliest `nextUpdate` (Unix seconds) of the CRLs in a file: PEM (one or more) or one DER
/// CRL. `None` when the file cannot be read or no CRL in it has a `nextUpdate`.
pub fn earliest_next_update(path: &Path) -> Option<f64> {
    let data = std::fs::read(path).ok()?;
    let ders: Vec<Vec<u8>> = if data.windows(11).any(|w| w == b"-----BEGIN ") {
        CertificateRevocationListDer::pem_slice_iter(&data)
            .filter_map(Result::ok)
            .map(|d| d.as_ref().to_vec())
            .collect()
    } else {
        vec![data]
    };
    ders.iter()
        .filter_map(|der| CertificateList::from_der(der).ok())
        .filter_map(|crl| crl.tbs_cert_list.next_update)
        .map(|t| t.to_unix_duration().as_secs_f64())
        .min_by(f64::total_cmp)
}

/// The bytes in the files under `dir` (not following symbolic links) and the space of its file
/// system; `None` when `dir` cannot be read.
pub fn store_disk(dir: &Path) -> Option<StoreDisk> {
    let fs = nix::sys::statvfs::statvfs(dir).ok()?;
    let fragment = fs.fragment_size();
    Some(StoreDisk {
        used_bytes: dir_bytes(dir),
        filesystem_available_bytes: fs.blocks_available().saturating_mul(fragment),
        filesystem_size_bytes: fs.blocks().saturating_mul(fragment),
    })
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_disk_counts_the_files_under_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 234]).unwrap();
        let disk = store_disk(dir.path()).unwrap();
        assert_eq!(disk.used_bytes, 1234);
        assert!(disk.filesystem_size_bytes >= disk.filesystem_available_bytes);
        assert!(disk.filesystem_size_bytes > 0);
        assert!(store_disk(&dir.path().join("missing")).is_none());
    }

    #[test]
    fn unreadable_files_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        assert!(certificate_not_after(&junk).is_none());
        assert!(earliest_next_update(&junk).is_none());
        assert!(certificate_not_after(&dir.path().join("missing.pem")).is_none());
    }
}
