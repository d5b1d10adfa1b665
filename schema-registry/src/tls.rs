//! The HTTPS listener's certificate and key, loaded with OpenSSL (the workspace's one TLS
//! library) into Mozilla's "intermediate" server profile (TLS 1.2 and 1.3, modern ciphers).
//!
//! It exists so that a registry reached over a network can be served without a proxy in front,
//! and so that every way of getting the files wrong is a start-up error that names the file and
//! the variable: a missing file, a file that is not PEM, a key that does not belong to the
//! certificate. An expired certificate is served (clients will say so) but logged as a warning.

use std::path::{Path, PathBuf};

use anyhow::Context;
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslMethod};
use openssl::x509::X509;

/// Where the certificate chain and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    /// PEM: the server certificate first, then any intermediates.
    pub(crate) cert: PathBuf,
    /// PEM: the certificate's private key, unencrypted (PKCS#8 or traditional).
    pub(crate) key: PathBuf,
}

impl TlsFiles {
    /// Both or neither: one without the other is a mistake, not plain HTTP.
    pub(crate) fn from_settings(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> anyhow::Result<Option<TlsFiles>> {
        fn given(path: Option<&Path>) -> Option<&Path> {
            path.filter(|p| !p.as_os_str().is_empty())
        }
        match (given(cert), given(key)) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            })),
            (Some(_), None) => anyhow::bail!(
                "API_TLS_CERT_FILE (--api-tls-cert-file) is set but API_TLS_KEY_FILE \
                 (--api-tls-key-file) is not: HTTPS needs both, plain HTTP neither"
            ),
            (None, Some(_)) => anyhow::bail!(
                "API_TLS_KEY_FILE (--api-tls-key-file) is set but API_TLS_CERT_FILE \
                 (--api-tls-cert-file) is not: HTTPS needs both, plain HTTP neither"
            ),
        }
    }

    /// Reads both files and builds the acceptor actix serves with.
    pub(crate) fn acceptor(&self) -> anyhow::Result<SslAcceptorBuilder> {
        let cert_pem = std::fs::read(&self.cert).with_context(|| {
            format!(
                "cannot read the TLS certificate {} (API_TLS_CERT_FILE)",
                self.cert.display()
            )
        })?;
        let chain = X509::stack_from_pem(&cert_pem).with_context(|| {
            format!(
                "the TLS certificate {} (API_TLS_CERT_FILE) is not a PEM certificate chain",
                self.cert.display()
            )
        })?;
        let mut chain = chain.into_iter();
        let leaf = chain.next().with_context(|| {
            format!(
                "the TLS certificate file {} (API_TLS_CERT_FILE) holds no certificate",
                self.cert.display()
            )
        })?;
        let key_pem = std::fs::read(&self.key).with_context(|| {
            format!(
                "cannot read the TLS private key {} (API_TLS_KEY_FILE)",
                self.key.display()
            )
        })?;
        let key = PKey::private_key_from_pem(&key_pem).map_err(|_| {
            anyhow::anyhow!(
                "the TLS private key {} (API_TLS_KEY_FILE) is not an unencrypted PEM private key",
                self.key.display()
            )
        })?;
        let now = openssl::asn1::Asn1Time::days_from_now(0)?;
        if leaf.not_after() < now {
            tracing::warn!(
                cert = %self.cert.display(),
                not_after = %leaf.not_after(),
                "the TLS certificate has expired: clients will refuse it"
            );
        }
        let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
            .context("setting up OpenSSL for the HTTPS listener")?;
        builder.set_certificate(&leaf)?;
        for intermediate in chain {
            builder.add_extra_chain_cert(intermediate)?;
        }
        // OpenSSL compares the key with the certificate already when it is set.
        let mismatch = |_| {
            anyhow::anyhow!(
                "the TLS private key {} (API_TLS_KEY_FILE) does not belong to the certificate {} \
                 (API_TLS_CERT_FILE)",
                self.key.display(),
                self.cert.display()
            )
        };
        builder.set_private_key(&key).map_err(mismatch)?;
        builder.check_private_key().map_err(mismatch)?;
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_or_neither() {
        let cert = Path::new("cert.pem");
        let key = Path::new("key.pem");
        assert_eq!(TlsFiles::from_settings(None, None).ok(), Some(None));
        assert!(TlsFiles::from_settings(Some(cert), Some(key))
            .expect("both")
            .is_some());
        let only_cert = TlsFiles::from_settings(Some(cert), None)
            .expect_err("one is an error")
            .to_string();
        assert!(only_cert.contains("API_TLS_KEY_FILE"), "{only_cert}");
        let only_key = TlsFiles::from_settings(None, Some(key))
            .expect_err("one is an error")
            .to_string();
        assert!(only_key.contains("API_TLS_CERT_FILE"), "{only_key}");
        assert_eq!(
            TlsFiles::from_settings(Some(Path::new("")), Some(Path::new(""))).ok(),
            Some(None),
            "empty variables count as unset"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let files = TlsFiles {
            cert: PathBuf::from("/nonexistent/registry-cert.pem"),
            key: PathBuf::from("/nonexistent/registry-key.pem"),
        };
        let Err(error) = files.acceptor() else {
            panic!("a missing file was accepted");
        };
        let message = format!("{error:#}");
        assert!(
            message.contains("/nonexistent/registry-cert.pem"),
            "{message}"
        );
    }
}
