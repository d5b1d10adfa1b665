//! Where and how to reach the Schema Registry: URL, trusted CA, credentials.
//!
//! Why a module: both services (and the benchmark) reach the same registry with the same
//! settings, named as Confluent's clients name them, so the names, their parsing and the rules
//! between them live here once:
//!
//! * `SCHEMA_REGISTRY_URL` — `http://` or `https://`. User info in it
//!   (`https://key:secret@host:8081`, percent-encoded) is taken out of the URL and used as HTTP
//!   Basic credentials, so the URL that is used, logged and shown in errors never carries them.
//! * `SCHEMA_REGISTRY_CA_FILE` — PEM certificates added to the trusted roots (the system's
//!   roots stay trusted) for an `https://` registry signed by a private CA.
//! * `SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=user:password`, or
//!   `SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE` naming a file that holds `user:password`
//!   (a trailing newline is ignored), so the secret need not sit in the environment.
//!
//! At most one source of credentials may be set; two are refused rather than one silently
//! winning. [`RegistryArgs`] is the `clap` face of these settings (services flatten it into
//! their own settings) and [`RegistryArgs::resolve`] checks them all — the CA file is read and
//! parsed, the user info split — so a mistake stops the process at start-up with a message
//! naming the setting. A password never appears in `Debug` output or in an error message.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::SrSettings;

use crate::error::ContractError;

/// The environment variable (and flag) names, as they appear in messages.
const URL_VAR: &str = "SCHEMA_REGISTRY_URL";
const CA_FILE_VAR: &str = "SCHEMA_REGISTRY_CA_FILE";
const USER_INFO_VAR: &str = "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO";
const USER_INFO_FILE_VAR: &str = "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE";

/// What `Debug` prints instead of a secret.
const REDACTED: &str = "<redacted>";

/// Basic authentication for the Schema Registry (e.g. a Confluent Cloud API key and secret).
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// User name or API key.
    pub username: String,
    /// Password or API secret.
    pub password: Option<String>,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl BasicAuth {
    /// Parses Confluent's `user:password` (`basic.auth.user.info`): the user name is everything
    /// before the first `:` and must not be empty; the password is everything after it and may
    /// itself contain `:`. `setting` names where the text came from, for the error message,
    /// which never contains the text itself.
    pub fn parse_user_info(text: &str, setting: &str) -> Result<BasicAuth, ContractError> {
        let (username, password) = text.split_once(':').ok_or_else(|| {
            ContractError::RegistrySettings(format!(
                "{setting} is not user:password (it has no ':')"
            ))
        })?;
        if username.is_empty() {
            return Err(ContractError::RegistrySettings(format!(
                "{setting} has an empty user name (expected user:password)"
            )));
        }
        Ok(BasicAuth {
            username: username.to_owned(),
            password: Some(password.to_owned()),
        })
    }
}

/// Trusted CA certificates read from a PEM file, kept as DER.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCertificates {
    path: PathBuf,
    der: Vec<Vec<u8>>,
}

impl fmt::Debug for CaCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCertificates")
            .field("path", &self.path)
            .field("certificates", &self.der.len())
            .finish()
    }
}

impl CaCertificates {
    /// Reads every certificate of the PEM file at `path`; a file that cannot be read, is not
    /// PEM or holds no certificate is an error naming the file.
    pub fn load(path: &Path) -> Result<CaCertificates, ContractError> {
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|e| {
            ContractError::RegistrySettings(format!("{CA_FILE_VAR} {shown}: cannot read it: {e}"))
        })?;
        let certificates = openssl::x509::X509::stack_from_pem(&pem).map_err(|e| {
            ContractError::RegistrySettings(format!(
                "{CA_FILE_VAR} {shown} is not a valid PEM certificate file: {e}"
            ))
        })?;
        if certificates.is_empty() {
            return Err(ContractError::RegistrySettings(format!(
                "{CA_FILE_VAR} {shown} holds no PEM certificate \
                 (expected -----BEGIN CERTIFICATE-----)"
            )));
        }
        let der = certificates
            .iter()
            .map(|c| c.to_der())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                ContractError::RegistrySettings(format!(
                    "{CA_FILE_VAR} {shown}: cannot re-encode a certificate: {e}"
                ))
            })?;
        Ok(CaCertificates {
            path: path.to_owned(),
            der,
        })
    }

    /// The file the certificates came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many certificates the file holds.
    pub fn len(&self) -> usize {
        self.der.len()
    }

    /// Whether the file held no certificate (never true for a loaded file).
    pub fn is_empty(&self) -> bool {
        self.der.is_empty()
    }
}

/// Where and how to reach the Schema Registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Base URL, e.g. `http://localhost:8081`. Built by [`RegistryConfig::parse`] (or
    /// [`RegistryArgs::resolve`]) it has no user info and no trailing `/`; built by
    /// [`RegistryConfig::new`] it is as given.
    pub url: String,
    /// Timeout for connecting and for each request; `None` keeps the client's default (30 s).
    pub timeout: Option<Duration>,
    /// Basic authentication, if the registry requires it.
    pub basic_auth: Option<BasicAuth>,
    /// Ignore `HTTP(S)_PROXY` environment variables (useful for a registry on localhost).
    pub no_proxy: bool,
    /// Extra trusted roots for an `https://` registry (the system's roots stay trusted).
    pub ca: Option<CaCertificates>,
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("basic_auth", &self.basic_auth)
            .field("no_proxy", &self.no_proxy)
            .field("ca", &self.ca)
            .finish()
    }
}

impl RegistryConfig {
    /// A configuration with defaults: no timeout override, no authentication, proxies from
    /// the environment, the system's trusted roots. The URL is used as given; prefer
    /// [`RegistryConfig::parse`] for a URL that may carry credentials.
    pub fn new(url: impl Into<String>) -> Self {
        RegistryConfig {
            url: url.into(),
            timeout: None,
            basic_auth: None,
            no_proxy: false,
            ca: None,
        }
    }

    /// Parses a registry URL: the scheme must be `http` or `https`; user info
    /// (`https://user:pass@host`, percent-decoded) is taken out of the URL and becomes
    /// [`basic_auth`](Self::basic_auth); a trailing `/` is dropped. Errors show the URL without
    /// its user info.
    pub fn parse(url: &str) -> Result<RegistryConfig, ContractError> {
        let shown = redact_url(url);
        let mut parsed = reqwest::Url::parse(url.trim()).map_err(|e| {
            ContractError::RegistrySettings(format!("{URL_VAR} {shown} is not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
            return Err(ContractError::RegistrySettings(format!(
                "{URL_VAR} {shown} must be an http:// or https:// URL with a host"
            )));
        }
        let basic_auth = if !parsed.username().is_empty() || parsed.password().is_some() {
            let undecodable = || {
                ContractError::RegistrySettings(format!(
                    "{URL_VAR} {shown}: the user info is not valid percent-encoded UTF-8"
                ))
            };
            let username = percent_decode(parsed.username()).ok_or_else(undecodable)?;
            if username.is_empty() {
                return Err(ContractError::RegistrySettings(format!(
                    "{URL_VAR} {shown} has a password but an empty user name"
                )));
            }
            let password = parsed
                .password()
                .map(|p| percent_decode(p).ok_or_else(undecodable))
                .transpose()?;
            // Cannot fail for an http(s) URL with a host.
            let cleared = parsed.set_username("").is_ok() && parsed.set_password(None).is_ok();
            if !cleared {
                return Err(ContractError::RegistrySettings(format!(
                    "{URL_VAR} {shown}: cannot take the user info out of the URL"
                )));
            }
            Some(BasicAuth { username, password })
        } else {
            None
        };
        let mut config = RegistryConfig::new(parsed.as_str().trim_end_matches('/'));
        config.basic_auth = basic_auth;
        Ok(config)
    }

    /// Sets the request timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets basic authentication.
    #[must_use]
    pub fn with_basic_auth(
        mut self,
        username: impl Into<String>,
        password: Option<String>,
    ) -> Self {
        self.basic_auth = Some(BasicAuth {
            username: username.into(),
            password,
        });
        self
    }

    /// Trusts the certificates of the PEM file at `path` in addition to the system's roots.
    pub fn with_ca_file(mut self, path: impl AsRef<Path>) -> Result<Self, ContractError> {
        self.ca = Some(CaCertificates::load(path.as_ref())?);
        Ok(self)
    }

    /// Ignores proxies from the environment.
    #[must_use]
    pub fn without_proxy(mut self) -> Self {
        self.no_proxy = true;
        self
    }

    /// The URL without user info, for logs and messages.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// A `reqwest` client builder reaching this registry as the codec does: the extra trusted
    /// roots, `https` only for an `https://` registry, the proxy choice and the timeout. For a
    /// service's own calls to the registry (a readiness probe); add the credentials to each
    /// request with [`RegistryConfig::authorize`].
    pub fn http_client_builder(&self) -> Result<reqwest::ClientBuilder, ContractError> {
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = &self.ca {
            let certificates = ca
                .der
                .iter()
                .map(|der| reqwest::Certificate::from_der(der))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    ContractError::RegistrySettings(format!(
                        "{CA_FILE_VAR} {}: {e}",
                        ca.path.display()
                    ))
                })?;
            builder = builder.tls_certs_merge(certificates);
        }
        if self.is_https() {
            // Never follow a redirect to plain http with the credentials.
            builder = builder.https_only(true);
        }
        if self.no_proxy {
            builder = builder.no_proxy();
        }
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout).connect_timeout(timeout);
        }
        Ok(builder)
    }

    /// Adds this registry's credentials (if any) to a request.
    pub fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.basic_auth {
            Some(auth) => request.basic_auth(&auth.username, auth.password.as_deref()),
            None => request,
        }
    }

    fn is_https(&self) -> bool {
        self.url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    }

    /// This configuration with user info left in the URL by [`RegistryConfig::new`] moved to
    /// [`basic_auth`](Self::basic_auth), so it is sent as a header and never shown.
    fn normalized(&self) -> Result<RegistryConfig, ContractError> {
        if redact_url(&self.url) == self.url {
            return Ok(self.clone());
        }
        let parsed = RegistryConfig::parse(&self.url)?;
        if self.basic_auth.is_some() && parsed.basic_auth.is_some() {
            return Err(ContractError::RegistrySettings(format!(
                "the registry credentials are given twice (user info in {URL_VAR} {} and \
                 basic auth): set only one",
                self.display_url()
            )));
        }
        Ok(RegistryConfig {
            url: parsed.url,
            basic_auth: self.basic_auth.clone().or(parsed.basic_auth),
            ..self.clone()
        })
    }

    pub(crate) fn settings(&self) -> Result<SrSettings, ContractError> {
        let config = self.normalized()?;
        config.build_settings()
    }

    fn build_settings(&self) -> Result<SrSettings, ContractError> {
        let client = self.http_client_builder()?;
        let mut builder = SrSettings::new_builder(self.url.clone());
        if let Some(timeout) = self.timeout {
            builder.set_timeout(timeout);
        }
        if let Some(auth) = &self.basic_auth {
            builder.set_basic_authorization(&auth.username, auth.password.as_deref());
        }
        if self.no_proxy {
            builder.no_proxy();
        }
        builder
            .build_with(client)
            .map_err(|source| ContractError::Config {
                url: self.display_url(),
                source,
            })
    }
}

/// The registry settings of a service's command line and environment; flatten it into the
/// service's settings (`#[command(flatten)]`) and call [`RegistryArgs::resolve`] at start-up.
///
/// ```
/// use clap::Parser;
/// use order_events::{OrderEventCodec, RegistryArgs, ORDER_EVENTS_TOPIC};
///
/// #[derive(Debug, Clone, Parser)]
/// struct Settings {
///     #[command(flatten)]
///     registry: RegistryArgs,
/// }
///
/// let settings = Settings::parse_from(["service", "--schema-registry-url", "https://registry:8081"]);
/// let config = settings.registry.resolve()?; // bad CA file, user info… → a clear error
/// let codec = OrderEventCodec::new(&config, ORDER_EVENTS_TOPIC)?;
/// // At start-up: retry `codec.register()` (or `check_access()`) while the error
/// // `is_retriable()`; exit with the message when it `is_fatal()`.
/// # let _ = codec;
/// # Ok::<(), order_events::ContractError>(())
/// ```
#[derive(Clone, PartialEq, Eq, clap::Args)]
pub struct RegistryArgs {
    /// Schema Registry base URL, http:// or https://. User info in it
    /// (https://user:password@host, percent-encoded) is used as basic auth.
    #[arg(
        long = "schema-registry-url",
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub url: String,
    /// PEM file of CA certificates to trust for an https:// registry, besides the system's.
    #[arg(
        long = "schema-registry-ca-file",
        env = "SCHEMA_REGISTRY_CA_FILE",
        value_name = "PATH"
    )]
    pub ca_file: Option<PathBuf>,
    /// Registry credentials as user:password (Confluent's basic.auth.user.info).
    #[arg(
        long = "schema-registry-basic-auth-user-info",
        env = "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        hide_env_values = true,
        value_name = "USER:PASSWORD"
    )]
    pub basic_auth_user_info: Option<String>,
    /// A file holding user:password (a trailing newline is ignored), instead of
    /// SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO.
    #[arg(
        long = "schema-registry-basic-auth-user-info-file",
        env = "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE",
        value_name = "PATH"
    )]
    pub basic_auth_user_info_file: Option<PathBuf>,
}

impl fmt::Debug for RegistryArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryArgs")
            .field("url", &redact_url(&self.url))
            .field("ca_file", &self.ca_file)
            .field(
                "basic_auth_user_info",
                &self.basic_auth_user_info.as_ref().map(|_| REDACTED),
            )
            .field("basic_auth_user_info_file", &self.basic_auth_user_info_file)
            .finish()
    }
}

impl RegistryArgs {
    /// Settings for the registry at `url`, with no CA file and no credentials (for tests and
    /// the settings' `for_tests`).
    pub fn new(url: impl Into<String>) -> RegistryArgs {
        RegistryArgs {
            url: url.into(),
            ca_file: None,
            basic_auth_user_info: None,
            basic_auth_user_info_file: None,
        }
    }

    /// Checks the settings and builds the client configuration: parses the URL (taking user
    /// info out of it), reads the user-info file and the CA file, and refuses two sources of
    /// credentials at once. A registry on a loopback address is reached without a proxy.
    ///
    /// An empty value counts as unset (as `VAR=` in a compose file or `${VAR:-}` leaves it).
    pub fn resolve(&self) -> Result<RegistryConfig, ContractError> {
        let set = |path: &Option<PathBuf>| path.clone().filter(|p| !p.as_os_str().is_empty());
        let user_info = self.basic_auth_user_info.clone().filter(|s| !s.is_empty());
        let user_info_file = set(&self.basic_auth_user_info_file);
        let ca_file = set(&self.ca_file);
        let mut config = RegistryConfig::parse(&self.url)?;
        let mut sources = Vec::new();
        if config.basic_auth.is_some() {
            sources.push(format!("user info in {URL_VAR}"));
        }
        if user_info.is_some() {
            sources.push(USER_INFO_VAR.to_owned());
        }
        if user_info_file.is_some() {
            sources.push(USER_INFO_FILE_VAR.to_owned());
        }
        if sources.len() > 1 {
            return Err(ContractError::RegistrySettings(format!(
                "the registry credentials are given more than once ({}): set only one",
                sources.join(", ")
            )));
        }
        if let Some(text) = &user_info {
            config.basic_auth = Some(BasicAuth::parse_user_info(text, USER_INFO_VAR)?);
        }
        if let Some(path) = &user_info_file {
            let setting = format!("{USER_INFO_FILE_VAR} {}", path.display());
            let text = std::fs::read_to_string(path).map_err(|e| {
                ContractError::RegistrySettings(format!("{setting}: cannot read it: {e}"))
            })?;
            let text = text.trim_end_matches(['\r', '\n']);
            config.basic_auth = Some(BasicAuth::parse_user_info(text, &setting)?);
        }
        if let Some(path) = &ca_file {
            config = config.with_ca_file(path)?;
        }
        if is_loopback(&config.url) {
            config = config.without_proxy();
        }
        Ok(config)
    }
}

/// `url` with anything between `scheme://` and the last `@` replaced, so user info (even
/// malformed, unencoded) is never shown.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    match rest.rfind('@') {
        Some(at) => {
            let host = &rest[at + 1..];
            match scheme {
                Some(scheme) => format!("{scheme}://{REDACTED}@{host}"),
                None => format!("{REDACTED}@{host}"),
            }
        }
        None => url.to_owned(),
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether the URL's host is `localhost` or a loopback address.
fn is_loopback(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = parsed.host_str() else {
        return false;
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "s3cr3t-Pw";

    fn settings_error(result: Result<RegistryConfig, ContractError>) -> String {
        match result {
            Err(ContractError::RegistrySettings(message)) => message,
            other => panic!("expected a settings error, got {other:?}"),
        }
    }

    #[test]
    fn user_info_splits_at_the_first_colon_so_passwords_may_contain_colons() {
        let auth = BasicAuth::parse_user_info("key:pa:ss:", "X").unwrap();
        assert_eq!(auth.username, "key");
        assert_eq!(auth.password.as_deref(), Some("pa:ss:"));
    }

    #[test]
    fn user_info_without_a_user_name_is_refused_without_echoing_it() {
        let err = BasicAuth::parse_user_info(&format!(":{PASSWORD}"), "THE_VAR").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("THE_VAR") && message.contains("empty user name"));
        assert!(!message.contains(PASSWORD));
    }

    #[test]
    fn user_info_without_a_colon_is_refused_without_echoing_it() {
        let err = BasicAuth::parse_user_info(PASSWORD, "THE_VAR").unwrap_err();
        assert!(err.to_string().contains("no ':'"));
        assert!(!format!("{err:?}").contains(PASSWORD));
    }

    #[test]
    fn user_info_in_the_url_is_percent_decoded_and_taken_out_of_the_url() {
        let config =
            RegistryConfig::parse("https://my%20key:p%40ss%3Aw%2Fd@registry:8081/").unwrap();
        assert_eq!(config.url, "https://registry:8081");
        let auth = config.basic_auth.unwrap();
        assert_eq!(auth.username, "my key");
        assert_eq!(auth.password.as_deref(), Some("p@ss:w/d"));
    }

    #[test]
    fn a_user_without_password_in_the_url_has_no_password() {
        let config = RegistryConfig::parse("http://key@registry:8081").unwrap();
        assert_eq!(config.basic_auth.unwrap().password, None);
        assert_eq!(config.url, "http://registry:8081");
    }

    #[test]
    fn an_empty_user_name_in_the_url_is_refused() {
        let message = settings_error(RegistryConfig::parse(&format!(
            "https://:{PASSWORD}@registry"
        )));
        assert!(message.contains("empty user name"), "{message}");
        assert!(!message.contains(PASSWORD));
    }

    #[test]
    fn malformed_percent_encoding_in_the_url_is_refused_without_echoing_it() {
        let message = settings_error(RegistryConfig::parse("https://key:ab%ZZcd@registry"));
        assert!(message.contains("percent-encoded"), "{message}");
        assert!(!message.contains("ab%ZZcd"));
    }

    #[test]
    fn a_url_without_user_info_is_kept_without_its_trailing_slash() {
        let config = RegistryConfig::parse("http://127.0.0.1:8081/").unwrap();
        assert_eq!(config.url, "http://127.0.0.1:8081");
        assert_eq!(config.basic_auth, None);
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        for url in ["localhost:8081", "ftp://registry", "not a url"] {
            let message = settings_error(RegistryConfig::parse(url));
            assert!(message.contains("SCHEMA_REGISTRY_URL"), "{message}");
        }
    }

    #[test]
    fn urls_are_shown_without_user_info() {
        assert_eq!(
            redact_url(&format!("https://key:{PASSWORD}@host:8081")),
            "https://<redacted>@host:8081"
        );
        // Unencoded '/' or '@' in the password: still hidden.
        assert_eq!(
            redact_url("https://key:a/b@c@host"),
            "https://<redacted>@host"
        );
        assert_eq!(redact_url("http://host:8081"), "http://host:8081");
    }

    #[test]
    fn debug_output_never_shows_a_password() {
        let config = RegistryConfig::new(format!("https://key:{PASSWORD}@host"))
            .with_basic_auth("key", Some(PASSWORD.into()));
        assert!(!format!("{config:?}").contains(PASSWORD));
        let mut args = RegistryArgs::new(format!("https://key:{PASSWORD}@host"));
        args.basic_auth_user_info = Some(format!("key:{PASSWORD}"));
        let shown = format!("{args:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn two_sources_of_credentials_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("user-info");
        std::fs::write(&file, format!("key:{PASSWORD}\n")).unwrap();
        let mut url_and_env = RegistryArgs::new(format!("https://key:{PASSWORD}@host"));
        url_and_env.basic_auth_user_info = Some(format!("key:{PASSWORD}"));
        let mut env_and_file = RegistryArgs::new("https://host");
        env_and_file.basic_auth_user_info = Some(format!("key:{PASSWORD}"));
        env_and_file.basic_auth_user_info_file = Some(file);
        for args in [url_and_env, env_and_file] {
            let message = settings_error(args.resolve());
            assert!(message.contains("more than once"), "{message}");
            assert!(!message.contains(PASSWORD));
        }
    }

    #[test]
    fn the_user_info_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("user-info");
        std::fs::write(&file, format!("key:{PASSWORD} \r\n")).unwrap();
        let mut args = RegistryArgs::new("https://host");
        args.basic_auth_user_info_file = Some(file);
        let auth = args.resolve().unwrap().basic_auth.unwrap();
        assert_eq!(auth.username, "key");
        // Only the line ending goes; a trailing space is part of the password.
        assert_eq!(auth.password.unwrap(), format!("{PASSWORD} "));
    }

    #[test]
    fn a_missing_user_info_file_is_named() {
        let mut args = RegistryArgs::new("https://host");
        args.basic_auth_user_info_file = Some(PathBuf::from("/nonexistent/user-info"));
        let message = settings_error(args.resolve());
        assert!(
            message.contains("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE /nonexistent/user-info"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_or_non_pem_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "hello\n").unwrap();
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        for path in [dir.path().join("missing.pem"), not_pem, broken] {
            let mut args = RegistryArgs::new("https://host");
            args.ca_file = Some(path.clone());
            let message = settings_error(args.resolve());
            assert!(
                message.contains(&format!("SCHEMA_REGISTRY_CA_FILE {}", path.display())),
                "{message}"
            );
        }
    }

    #[test]
    fn empty_values_count_as_unset() {
        let mut args = RegistryArgs::new("https://key:pw@host");
        args.basic_auth_user_info = Some(String::new());
        args.basic_auth_user_info_file = Some(PathBuf::new());
        args.ca_file = Some(PathBuf::new());
        let config = args.resolve().unwrap();
        assert_eq!(config.basic_auth.unwrap().username, "key");
        assert_eq!(config.ca, None);
    }

    #[test]
    fn user_info_left_in_a_url_given_to_new_is_moved_to_basic_auth() {
        let config = RegistryConfig::new(format!("https://key:{PASSWORD}@host:8081/"));
        let normalized = config.normalized().unwrap();
        assert_eq!(normalized.url, "https://host:8081");
        assert_eq!(
            normalized.basic_auth.unwrap().password.as_deref(),
            Some(PASSWORD)
        );
        let twice = config
            .with_basic_auth("other", None)
            .normalized()
            .unwrap_err();
        assert!(twice.to_string().contains("twice"));
        assert!(!twice.to_string().contains(PASSWORD));
    }

    #[test]
    fn the_env_user_info_becomes_basic_auth_and_loopback_skips_proxies() {
        let mut args = RegistryArgs::new("http://localhost:8081");
        args.basic_auth_user_info = Some("key:a:b".into());
        let config = args.resolve().unwrap();
        assert_eq!(config.basic_auth.unwrap().password.as_deref(), Some("a:b"));
        assert!(config.no_proxy);
        assert!(
            !RegistryArgs::new("https://registry.example.com")
                .resolve()
                .unwrap()
                .no_proxy
        );
    }

    #[test]
    fn help_shows_no_secret_from_the_environment() {
        use clap::{CommandFactory, Parser};
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            registry: RegistryArgs,
        }
        let args = Cli::command();
        for id in ["url", "basic_auth_user_info"] {
            let arg = args.get_arguments().find(|a| a.get_id() == id).unwrap();
            assert!(arg.is_hide_env_values_set(), "{id}");
        }
        let parsed = Cli::try_parse_from([
            "x",
            "--schema-registry-url",
            "https://host",
            "--schema-registry-basic-auth-user-info",
            "k:p",
        ])
        .unwrap();
        assert_eq!(parsed.registry.url, "https://host");
        let defaults = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(defaults.registry.url, "http://127.0.0.1:8081");
    }
}
