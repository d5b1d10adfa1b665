//! Password hashes for the registry's users file: Argon2id in the PHC string format.
//!
//! The users file must not hold passwords, only something an attacker who reads it cannot turn
//! back into one cheaply: Argon2id (RFC 9106), the memory-hard hash OWASP recommends. The
//! strings are the PHC format every Argon2 tool writes (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`),
//! so `schema-registry hash-password`, the reference `argon2` command and libraries such as
//! Python's argon2-cffi all produce lines this module accepts. The work itself is OpenSSL's
//! Argon2 (3.2 and later, which the workspace builds from source), so no second crypto library
//! comes in.

use std::fmt;

use openssl::base64;

/// The parameters new hashes get: OWASP's first Argon2id recommendation (19 MiB, 2 passes,
/// 1 lane), tens of milliseconds of one core per verification.
pub const DEFAULT_PARAMS: Params = Params {
    memory_kib: 19 * 1024,
    iterations: 2,
    lanes: 1,
};

/// The largest parameters a users file may ask for; beyond them one verification would hold
/// gigabytes or seconds of CPU, which is a mistake, not a choice.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ITERATIONS: u32 = 64;
const MAX_LANES: u32 = 16;
const SALT_BYTES: usize = 16;
const HASH_BYTES: usize = 32;

/// Argon2id's cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// `m`: memory in KiB.
    pub memory_kib: u32,
    /// `t`: passes over the memory.
    pub iterations: u32,
    /// `p`: lanes.
    pub lanes: u32,
}

/// Why a string is not a usable password hash. Never contains the hash itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error(
        "not an Argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash); \
         make one with `schema-registry hash-password`"
    )]
    NotPhc,
    #[error("only argon2id hashes are accepted, not {0}")]
    Algorithm(String),
    #[error("only Argon2 version 19 (v=19) is supported")]
    Version,
    #[error("bad Argon2 parameters: {0}")]
    Params(String),
    #[error("the salt or the hash is not base64 of a sensible length")]
    Encoding,
    #[error("Argon2 failed in OpenSSL: {0}")]
    OpenSsl(String),
}

/// A parsed Argon2id hash: the only way to build one is to parse a valid PHC string or to hash
/// a password.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    params: Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not a secret in the way the password is, but it lets anyone who sees it
        // guess passwords offline: keep it out of logs and panics.
        f.debug_struct("PasswordHash")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn create(password: &[u8], params: Params) -> Result<PasswordHash, HashError> {
        check_params(params)?;
        let mut salt = vec![0u8; SALT_BYTES];
        openssl::rand::rand_bytes(&mut salt).map_err(|e| HashError::OpenSsl(e.to_string()))?;
        let mut hash = vec![0u8; HASH_BYTES];
        argon2id(password, &salt, params, &mut hash)?;
        Ok(PasswordHash { params, salt, hash })
    }

    /// Parses a PHC string `$argon2id$v=19$m=M,t=T,p=P$SALT$HASH` (base64 without padding).
    pub fn parse(phc: &str) -> Result<PasswordHash, HashError> {
        let mut parts = phc.split('$');
        if parts.next() != Some("") {
            return Err(HashError::NotPhc);
        }
        let algorithm = parts.next().ok_or(HashError::NotPhc)?;
        if algorithm != "argon2id" {
            if algorithm.starts_with("argon2") {
                return Err(HashError::Algorithm(algorithm.to_string()));
            }
            return Err(HashError::NotPhc);
        }
        let version = parts.next().ok_or(HashError::NotPhc)?;
        if version != "v=19" {
            return Err(HashError::Version);
        }
        let params = parse_params(parts.next().ok_or(HashError::NotPhc)?)?;
        let salt = decode_b64(parts.next().ok_or(HashError::NotPhc)?)?;
        let hash = decode_b64(parts.next().ok_or(HashError::NotPhc)?)?;
        if parts.next().is_some() {
            return Err(HashError::NotPhc);
        }
        if !(8..=64).contains(&salt.len()) || !(16..=64).contains(&hash.len()) {
            return Err(HashError::Encoding);
        }
        Ok(PasswordHash { params, salt, hash })
    }

    /// Whether `password` is the one this hash was made from (constant-time comparison).
    /// Costs one Argon2id computation: call it off the async threads.
    pub fn verify(&self, password: &[u8]) -> Result<bool, HashError> {
        let mut computed = vec![0u8; self.hash.len()];
        argon2id(password, &self.salt, self.params, &mut computed)?;
        Ok(openssl::memcmp::eq(&computed, &self.hash))
    }

    /// The PHC string, as written in the users file.
    pub fn to_phc(&self) -> String {
        format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            self.params.memory_kib,
            self.params.iterations,
            self.params.lanes,
            encode_b64(&self.salt),
            encode_b64(&self.hash)
        )
    }
}

fn argon2id(password: &[u8], salt: &[u8], params: Params, out: &mut [u8]) -> Result<(), HashError> {
    openssl::kdf::argon2id(
        None,
        password,
        salt,
        None,
        None,
        params.iterations,
        params.lanes,
        params.memory_kib,
        out,
    )
    .map_err(|e| HashError::OpenSsl(e.to_string()))
}

fn parse_params(text: &str) -> Result<Params, HashError> {
    let (mut m, mut t, mut p) = (None, None, None);
    for pair in text.split(',') {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| HashError::Params(format!("{pair:?} is not name=value")))?;
        let value: u32 = value
            .parse()
            .map_err(|_| HashError::Params(format!("{name}={value:?} is not a number")))?;
        let slot = match name {
            "m" => &mut m,
            "t" => &mut t,
            "p" => &mut p,
            other => return Err(HashError::Params(format!("unknown parameter {other:?}"))),
        };
        if slot.replace(value).is_some() {
            return Err(HashError::Params(format!("{name} given twice")));
        }
    }
    let params = Params {
        memory_kib: m.ok_or_else(|| HashError::Params("m is missing".into()))?,
        iterations: t.ok_or_else(|| HashError::Params("t is missing".into()))?,
        lanes: p.ok_or_else(|| HashError::Params("p is missing".into()))?,
    };
    check_params(params)?;
    Ok(params)
}

fn check_params(params: Params) -> Result<(), HashError> {
    if !(1..=MAX_LANES).contains(&params.lanes) {
        return Err(HashError::Params(format!("p must be 1..={MAX_LANES}")));
    }
    if !(1..=MAX_ITERATIONS).contains(&params.iterations) {
        return Err(HashError::Params(format!("t must be 1..={MAX_ITERATIONS}")));
    }
    if params.memory_kib < 8 * params.lanes || params.memory_kib > MAX_MEMORY_KIB {
        return Err(HashError::Params(format!(
            "m must be at least 8 KiB per lane and at most {MAX_MEMORY_KIB} KiB"
        )));
    }
    Ok(())
}

/// Standard base64 without padding, as PHC strings write it.
fn encode_b64(bytes: &[u8]) -> String {
    base64::encode_block(bytes)
        .trim_end_matches('=')
        .to_string()
}

fn decode_b64(text: &str) -> Result<Vec<u8>, HashError> {
    if text.is_empty()
        || text.len() % 4 == 1
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return Err(HashError::Encoding);
    }
    let mut padded = text.to_string();
    while !padded.len().is_multiple_of(4) {
        padded.push('=');
    }
    base64::decode_block(&padded).map_err(|_| HashError::Encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by the reference implementation: `echo -n "correct horse" | argon2
    /// saltsaltsalt16b -id -t 2 -m 10 -p 1 -l 32 -e`.
    const REFERENCE: &str = "$argon2id$v=19$m=1024,t=2,p=1$c2FsdHNhbHRzYWx0MTZi$6+Z5/BvqPLj5NXKsHeQazFQS0+fzH1nP/eWBsq6+zQ0";
    /// `echo -n "password" | argon2 somesalt -id -t 2 -m 16 -p 4 -l 32 -e` (several lanes).
    const REFERENCE_LANES: &str =
        "$argon2id$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$GpZ3sK/oH9p7VIiV56G/64Zo/8GaUw434IimaPqxwCo";

    #[test]
    fn a_hash_from_the_reference_implementation_verifies_its_password_only() {
        let hash = PasswordHash::parse(REFERENCE).expect("valid");
        assert_eq!(hash.verify(b"correct horse"), Ok(true));
        assert_eq!(hash.verify(b"correct horse "), Ok(false));
        assert_eq!(hash.verify(b""), Ok(false));
        let lanes = PasswordHash::parse(REFERENCE_LANES).expect("valid");
        assert_eq!(lanes.verify(b"password"), Ok(true));
        assert_eq!(lanes.verify(b"Password"), Ok(false));
    }

    #[test]
    fn a_parsed_hash_prints_back_the_same_string() {
        let hash = PasswordHash::parse(REFERENCE).expect("valid");
        assert_eq!(hash.to_phc(), REFERENCE);
    }

    #[test]
    fn a_created_hash_verifies_and_uses_a_fresh_salt() {
        let small = Params {
            memory_kib: 64,
            iterations: 1,
            lanes: 1,
        };
        let one = PasswordHash::create(b"s3cret", small).expect("hash");
        let two = PasswordHash::create(b"s3cret", small).expect("hash");
        assert_ne!(one.to_phc(), two.to_phc());
        let reparsed = PasswordHash::parse(&one.to_phc()).expect("own output parses");
        assert_eq!(reparsed.verify(b"s3cret"), Ok(true));
        assert_eq!(reparsed.verify(b"s3cret2"), Ok(false));
    }

    #[test]
    fn other_algorithms_versions_and_broken_strings_are_refused() {
        let argon2i = "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        assert!(matches!(
            PasswordHash::parse(argon2i),
            Err(HashError::Algorithm(_))
        ));
        let old = REFERENCE.replace("v=19", "v=16");
        assert_eq!(PasswordHash::parse(&old), Err(HashError::Version));
        assert_eq!(PasswordHash::parse("hunter2"), Err(HashError::NotPhc));
        assert_eq!(
            PasswordHash::parse("$2b$12$abcdefghijklmnopqrstuv"),
            Err(HashError::NotPhc)
        );
        let huge = REFERENCE.replace("m=1024", "m=4000000000");
        assert!(matches!(
            PasswordHash::parse(&huge),
            Err(HashError::Params(_))
        ));
        let bad_b64 = REFERENCE.replace("c2FsdHNhbHRzYWx0MTZi", "c2Fsd!NhbHRzYWx0MTZi");
        assert_eq!(PasswordHash::parse(&bad_b64), Err(HashError::Encoding));
        let extra = format!("{REFERENCE}$more");
        assert_eq!(PasswordHash::parse(&extra), Err(HashError::NotPhc));
    }

    #[test]
    fn the_debug_form_shows_no_salt_or_hash() {
        let hash = PasswordHash::parse(REFERENCE).expect("valid");
        let shown = format!("{hash:?}");
        assert!(!shown.contains("c2FsdHNhbHRz"), "{shown}");
        assert!(!shown.contains("6+Z5"), "{shown}");
    }
}
