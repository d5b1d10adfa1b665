//! Certificates for tests: a throw-away certificate authority that issues server and client
//! certificates, so TLS tests (a broker or registry behind TLS, mTLS clients, a wrong CA, an
//! expired certificate) need no files checked in and nothing from the system.
//!
//! Everything is written as PEM into the authority's own temporary directory, deleted when the
//! [`TestPki`] is dropped. Keys are ECDSA P-256 (fast to generate, accepted by OpenSSL,
//! librdkafka and rustls), written as unencrypted PKCS#8. A second [`TestPki::new`] is an
//! unrelated authority: the "wrong CA" of a test.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509};

const DAY: i64 = 24 * 60 * 60;

/// Whether an issued certificate is valid now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid from a day ago for 30 days.
    Current,
    /// Valid from 30 days ago until yesterday: not-after is in the past.
    Expired,
}

/// A certificate and its private key, as PEM files in the issuing [`TestPki`]'s directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The leaf certificate (PEM, the leaf only; the CA is [`TestPki::ca_file`]).
    pub cert: PathBuf,
    /// Its private key (PEM, unencrypted PKCS#8).
    pub key: PathBuf,
}

/// A fresh certificate authority in its own temporary directory (deleted on drop).
pub struct TestPki {
    dir: tempfile::TempDir,
    ca_cert: X509,
    ca_key: PKey<Private>,
    ca_file: PathBuf,
    issued: AtomicU32,
}

impl TestPki {
    /// Creates a new CA (self-signed, valid from a day ago for a year) and writes its certificate
    /// to [`TestPki::ca_file`].
    pub fn new() -> anyhow::Result<TestPki> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-pki-")
            .tempdir()
            .context("creating the test CA's temporary directory")?;
        let ca_key = new_key()?;
        let serial = random_serial()?;
        let common_name = format!("testkit CA {}", serial.to_hex_str()?);
        let name = subject(&common_name)?;

        let mut builder = X509Builder::new()?;
        builder.set_version(2)?;
        let serial_number = Asn1Integer::from_bn(&serial)?;
        builder.set_serial_number(&serial_number)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&ca_key)?;
        let now = unix_now()?;
        let not_before = Asn1Time::from_unix(now - DAY)?;
        let not_after = Asn1Time::from_unix(now + 365 * DAY)?;
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        builder.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        builder.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
        builder.append_extension(ski)?;
        builder.sign(&ca_key, MessageDigest::sha256())?;
        let ca_cert = builder.build();

        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.to_pem()?)
            .with_context(|| format!("writing {}", ca_file.display()))?;
        Ok(TestPki {
            dir,
            ca_cert,
            ca_key,
            ca_file,
            issued: AtomicU32::new(0),
        })
    }

    /// The CA certificate (PEM): what clients trust (`ssl.ca.location`, a CA file).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The CA certificate, for checks in tests.
    pub fn ca_certificate(&self) -> &X509 {
        &self.ca_cert
    }

    /// Issues a certificate for `name` (its common name) with `hosts` as subject alternative
    /// names (each an IP address if it parses as one, else a DNS name), usable both as a server
    /// and as a client certificate (mTLS). Each call writes new files, so issuing the same name
    /// twice (say current and expired) keeps both.
    pub fn issue(&self, name: &str, hosts: &[&str], validity: Validity) -> anyhow::Result<Issued> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bail!("certificate name {name:?}: use letters, digits, '-', '_' or '.'");
        }
        if hosts.is_empty() {
            bail!("certificate {name:?}: give at least one host name or IP address");
        }
        let key = new_key()?;
        let mut builder = X509Builder::new()?;
        builder.set_version(2)?;
        let serial = random_serial()?;
        let serial_number = Asn1Integer::from_bn(&serial)?;
        builder.set_serial_number(&serial_number)?;
        let subject_name = subject(name)?;
        builder.set_subject_name(&subject_name)?;
        builder.set_issuer_name(self.ca_cert.subject_name())?;
        builder.set_pubkey(&key)?;
        let now = unix_now()?;
        let (not_before, not_after) = match validity {
            Validity::Current => (now - DAY, now + 30 * DAY),
            Validity::Expired => (now - 30 * DAY, now - DAY),
        };
        let not_before = Asn1Time::from_unix(not_before)?;
        let not_after = Asn1Time::from_unix(not_after)?;
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        builder.append_extension(BasicConstraints::new().critical().build()?)?;
        builder.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_agreement()
                .build()?,
        )?;
        builder.append_extension(
            ExtendedKeyUsage::new()
                .server_auth()
                .client_auth()
                .build()?,
        )?;
        let mut san = SubjectAlternativeName::new();
        for host in hosts {
            if host.parse::<std::net::IpAddr>().is_ok() {
                san.ip(host);
            } else {
                san.dns(host);
            }
        }
        let context = builder.x509v3_context(Some(&self.ca_cert), None);
        let san = san.build(&context)?;
        let ski = SubjectKeyIdentifier::new().build(&context)?;
        let aki = AuthorityKeyIdentifier::new().keyid(true).build(&context)?;
        builder.append_extension(san)?;
        builder.append_extension(ski)?;
        builder.append_extension(aki)?;
        builder.sign(&self.ca_key, MessageDigest::sha256())?;
        let cert = builder.build();

        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let cert_path = self.dir.path().join(format!("{n:02}-{name}.pem"));
        let key_path = self.dir.path().join(format!("{n:02}-{name}.key"));
        std::fs::write(&cert_path, cert.to_pem()?)
            .with_context(|| format!("writing {}", cert_path.display()))?;
        std::fs::write(&key_path, key.private_key_to_pem_pkcs8()?)
            .with_context(|| format!("writing {}", key_path.display()))?;
        Ok(Issued {
            cert: cert_path,
            key: key_path,
        })
    }
}

fn new_key() -> anyhow::Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = EcKey::generate(&group).context("generating an EC key")?;
    Ok(PKey::from_ec_key(key)?)
}

fn random_serial() -> anyhow::Result<BigNum> {
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    Ok(serial)
}

fn subject(common_name: &str) -> anyhow::Result<X509Name> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "testkit")?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(name.build())
}

fn unix_now() -> anyhow::Result<i64> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    i64::try_from(secs).context("the clock is beyond 2^63 seconds")
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509StoreContext, X509VerifyResult};

    fn verify(ca: &TestPki, issued: &Issued) -> anyhow::Result<X509VerifyResult> {
        let leaf = X509::from_pem(&std::fs::read(&issued.cert)?)?;
        let mut store = X509StoreBuilder::new()?;
        store.add_cert(ca.ca_certificate().clone())?;
        let store = store.build();
        let chain = Stack::new()?;
        let mut context = X509StoreContext::new()?;
        Ok(context.init(&store, &leaf, &chain, |c| {
            c.verify_cert()?;
            Ok(c.error())
        })?)
    }

    #[test]
    fn a_current_leaf_verifies_against_its_ca_only() -> anyhow::Result<()> {
        let pki = TestPki::new()?;
        let wrong = TestPki::new()?;
        let issued = pki.issue("broker", &["localhost", "127.0.0.1"], Validity::Current)?;
        assert_eq!(verify(&pki, &issued)?, X509VerifyResult::OK);
        let against_wrong = verify(&wrong, &issued)?;
        assert_ne!(against_wrong, X509VerifyResult::OK);
        assert_eq!(
            against_wrong.error_string(),
            "unable to get local issuer certificate"
        );
        Ok(())
    }

    #[test]
    fn an_expired_leaf_fails_as_expired() -> anyhow::Result<()> {
        let pki = TestPki::new()?;
        let issued = pki.issue("broker", &["localhost"], Validity::Expired)?;
        assert_eq!(
            verify(&pki, &issued)?.error_string(),
            "certificate has expired"
        );
        let cert = X509::from_pem(&std::fs::read(&issued.cert)?)?;
        assert!(cert.not_after() < Asn1Time::days_from_now(0)?);
        Ok(())
    }

    #[test]
    fn the_leaf_carries_its_sans_usages_and_a_pkcs8_key() -> anyhow::Result<()> {
        let pki = TestPki::new()?;
        let issued = pki.issue("client-1", &["broker.test", "::1"], Validity::Current)?;
        let cert = X509::from_pem(&std::fs::read(&issued.cert)?)?;
        let names = cert.subject_alt_names().context("no SANs")?;
        let dns: Vec<_> = names.iter().filter_map(|n| n.dnsname()).collect();
        let ips: Vec<_> = names.iter().filter_map(|n| n.ipaddress()).collect();
        assert_eq!(dns, ["broker.test"]);
        assert_eq!(ips, [&std::net::Ipv6Addr::LOCALHOST.octets()[..]]);
        let text = String::from_utf8(cert.to_text()?)?;
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        let key_pem = std::fs::read_to_string(&issued.key)?;
        assert!(
            key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{key_pem}"
        );
        let key = PKey::private_key_from_pem(key_pem.as_bytes())?;
        assert!(cert.public_key()?.public_eq(&key));
        // Issuing the same name again keeps the first files.
        let again = pki.issue("client-1", &["broker.test"], Validity::Expired)?;
        assert_ne!(again, issued);
        assert!(issued.cert.exists() && again.cert.exists());
        Ok(())
    }

    #[test]
    fn bad_names_and_empty_hosts_are_refused() -> anyhow::Result<()> {
        let pki = TestPki::new()?;
        assert!(pki
            .issue("../x", &["localhost"], Validity::Current)
            .is_err());
        assert!(pki.issue("ok", &[], Validity::Current).is_err());
        Ok(())
    }
}
