//! TLS to the database: rustls with an explicit crypto provider (aws-lc-rs, as the AWS SDK uses), verifying
//! the certificate chain and the host name against the RDS CA bundle compiled into the binary, or a
//! target's own `ca_file`. Only those CAs are trusted; there is no switch to accept invalid certificates.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Amazon RDS CA certificates (see `shared/data/README.md` for the source).
pub static RDS_CA_BUNDLE: &[u8] = include_bytes!("../data/rds-ca-bundle.pem");

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("CA bundle {origin}: {message}")]
    Bundle { origin: String, message: String },
}

/// Parse every certificate of a PEM bundle; at least one is required.
pub fn parse_bundle(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Bundle {
            origin: origin.into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Bundle {
            origin: origin.into(),
            message: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// A client configuration trusting exactly the given CA file, or the bundled RDS CAs.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let (pem, origin) = match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| TlsError::CaFile {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            (pem, path.display().to_string())
        }
        None => (RDS_CA_BUNDLE.to_vec(), "bundled RDS CA bundle".to_owned()),
    };
    let mut roots = RootCertStore::empty();
    for cert in parse_bundle(&pem, &origin)? {
        roots.add(cert).map_err(|e| TlsError::Bundle {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Bundle {
            origin,
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_of_the_rds_bundle_parses_and_is_trusted() {
        let blocks = std::str::from_utf8(RDS_CA_BUNDLE)
            .unwrap()
            .matches("-----BEGIN CERTIFICATE-----")
            .count();
        let certs = parse_bundle(RDS_CA_BUNDLE, "rds").unwrap();
        assert_eq!(certs.len(), blocks);
        assert!(blocks >= 100, "{blocks}");
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(certs);
        assert_eq!((added, ignored), (blocks, 0));
        client_config(None).unwrap();
    }

    #[test]
    fn bad_ca_files_are_clear_errors() {
        let err = client_config(Some(Path::new("/nonexistent/ca.pem")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        assert!(
            parse_bundle(b"not a pem", "x")
                .unwrap_err()
                .to_string()
                .contains("no certificate")
        );
    }
}
