//! HTTP Basic authentication with two roles, for a registry reachable by more than its owners.
//!
//! Without it anyone who can reach the port can delete subjects or switch the registry to
//! READONLY. With `SCHEMA_REGISTRY_AUTH_FILE` set, every request except the probes (`/health`,
//! `/ready`, which then keep Kafka's error text out of their body) needs a user from that file,
//! the UI included (the browser asks for the password), and the user's role decides what it may do, as Confluent's basic auth with
//! role mapping does:
//!
//! - `read-only`: every `GET`/`HEAD`, plus the `POST`s that change nothing: looking a schema up
//!   under a subject (`POST /subjects/{subject}`) and compatibility checks
//!   (`POST /compatibility/subjects/{subject}/versions[/{version}]`).
//! - `read-write`: everything.
//!
//! The file (`Users::parse`) has one user per line, `name:argon2id-phc-hash:role`, with `#`
//! comments and blank lines; see [`crate::password`] for the hash. It is read once, at start-up,
//! and any problem is a start-up error naming the line, never its content.
//!
//! Argon2 is deliberately slow (tens of milliseconds of CPU), so `Authenticator` remembers
//! successful checks (a bounded set keyed by a SHA-256 of a per-process random key, the user and
//! the presented password: never the password itself) and runs at most a few checks at once on
//! the blocking pool, so a flood of wrong passwords queues instead of taking every core, while
//! clients whose credentials were already checked pass without waiting.
//!
//! Failures answer Confluent's bodies: 401 `{"error_code":401,"message":"Unauthorized"}` with
//! `WWW-Authenticate: Basic realm="schema-registry"` (so a browser asks for a password and the
//! UI works), and 403 with code 40301 naming the refused operation.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{HttpResponse, ResponseError};
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::password::{PasswordHash, DEFAULT_PARAMS};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads, lookups and compatibility checks.
    ReadOnly,
    /// Everything.
    ReadWrite,
}

impl Role {
    /// Parses `read-only` or `read-write`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "read-only" => Some(Role::ReadOnly),
            "read-write" => Some(Role::ReadWrite),
            _ => None,
        }
    }

    /// The name used in the users file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::ReadWrite => "read-write",
        }
    }

    fn allows(self, access: Access) -> bool {
        match access {
            Access::Open | Access::Read => true,
            Access::Write => self == Role::ReadWrite,
        }
    }
}

/// A user name as the users file and the `Authorization` header may carry it: 1 to 128
/// characters, no `:` (the separator of both), no whitespace or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserName(String);

impl UserName {
    pub fn parse(text: &str) -> Result<UserName, &'static str> {
        if text.is_empty() {
            return Err("the user name is empty");
        }
        if text.chars().count() > 128 {
            return Err("the user name is longer than 128 characters");
        }
        if text
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err("the user name contains ':', a space or a control character");
        }
        Ok(UserName(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One user of the file.
#[derive(Debug, Clone)]
struct User {
    hash: PasswordHash,
    role: Role,
}

/// Why the users file cannot be used. Messages name the file and the line, never a hash or a
/// password.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UsersFileError {
    #[error("cannot read the users file {path} (SCHEMA_REGISTRY_AUTH_FILE): {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("users file {path} (SCHEMA_REGISTRY_AUTH_FILE), line {line}: {problem}")]
    Line {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("users file {path} (SCHEMA_REGISTRY_AUTH_FILE) has no users: every request would be refused")]
    Empty { path: String },
}

/// The users from the file, by name.
#[derive(Debug, Clone)]
pub(crate) struct Users {
    users: HashMap<String, User>,
}

impl Users {
    /// Reads and parses the users file at `path`.
    pub(crate) fn load(path: &Path) -> Result<Users, UsersFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| UsersFileError::Read {
            path: shown.clone(),
            source,
        })?;
        Users::parse(&text, &shown)
    }

    /// Parses the users file format: one `name:hash:role` per line, where `hash` is an Argon2id
    /// PHC string (`schema-registry hash-password` writes one) and `role` is `read-only` or
    /// `read-write`. Blank lines and lines starting with `#` are ignored; surrounding whitespace
    /// is trimmed. `path` only names the file in errors.
    pub fn parse(text: &str, path: &str) -> Result<Users, UsersFileError> {
        let mut users = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let problem = |problem: String| UsersFileError::Line {
                path: path.to_string(),
                line: index + 1,
                problem,
            };
            let (name, rest) = line.split_once(':').ok_or_else(|| {
                problem("expected name:hash:role (fields separated by ':')".to_string())
            })?;
            let (hash, role) = rest.rsplit_once(':').ok_or_else(|| {
                problem("expected name:hash:role (fields separated by ':')".to_string())
            })?;
            let name = UserName::parse(name.trim()).map_err(|e| problem(e.to_string()))?;
            let role = Role::parse(role.trim()).ok_or_else(|| {
                problem("unknown role: expected read-only or read-write".to_string())
            })?;
            let hash = PasswordHash::parse(hash.trim())
                .map_err(|e| problem(format!("the password hash is not usable: {e}")))?;
            if users.insert(name.0.clone(), User { hash, role }).is_some() {
                return Err(problem(format!("user {} is listed twice", name.0)));
            }
        }
        if users.is_empty() {
            return Err(UsersFileError::Empty {
                path: path.to_string(),
            });
        }
        Ok(Users { users })
    }

    /// How many users the file has.
    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Nothing: the liveness and readiness probes.
    Open,
    /// Any authenticated user.
    Read,
    /// A `read-write` user.
    Write,
}

/// The access `method` on `path` needs. Anything not known to be harmless is a write, so a
/// method or path added later is protected until someone decides otherwise.
pub(crate) fn required_access(method: &Method, path: &str) -> Access {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if (path == "/health" || path == "/ready") && (method == Method::GET || method == Method::HEAD)
    {
        return Access::Open;
    }
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return Access::Read;
    }
    if method == Method::POST {
        let lookup = matches!(segments.as_slice(), ["subjects", subject] if !subject.is_empty());
        let compatibility = matches!(
            segments.as_slice(),
            ["compatibility", "subjects", subject, "versions"] if !subject.is_empty()
        ) || matches!(
            segments.as_slice(),
            ["compatibility", "subjects", subject, "versions", version]
                if !subject.is_empty() && !version.is_empty()
        );
        if lookup || compatibility {
            return Access::Read;
        }
    }
    Access::Write
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub(crate) user: UserName,
    pub(crate) role: Role,
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No `Authorization` header, or not `Basic`.
    Anonymous,
    /// A `Basic` header that does not decode to `user:password`.
    Malformed,
    /// An unknown user or a wrong password.
    WrongCredentials,
    /// Too many password checks waiting; try again.
    Busy,
}

/// Successful checks remembered, at most [`CACHE_CAPACITY`]; the oldest goes first.
const CACHE_CAPACITY: usize = 1024;
/// How long a request waits for a turn to run Argon2 before answering 503.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Cache {
    keys: std::collections::HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl Cache {
    fn contains(&self, key: &[u8; 32]) -> bool {
        self.keys.contains(key)
    }

    fn insert(&mut self, key: [u8; 32]) {
        if !self.keys.insert(key) {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > CACHE_CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.keys.remove(&oldest);
            }
        }
    }
}

/// Counters for tests and diagnosis.
#[derive(Debug, Default)]
struct Stats {
    verifications: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Checks `Authorization` headers against the users file.
pub(crate) struct Authenticator {
    users: Users,
    /// Verified against for unknown users, so that a wrong name costs what a wrong password
    /// costs and timing does not tell which names exist.
    decoy: PasswordHash,
    cache_key: [u8; 32],
    cache: Mutex<Cache>,
    permits: Arc<Semaphore>,
    queue_wait: Duration,
    stats: Arc<Stats>,
}

impl Authenticator {
    /// An authenticator for `users` running at most `max_concurrent` Argon2 checks at once.
    pub(crate) fn new(users: Users, max_concurrent: usize) -> anyhow::Result<Authenticator> {
        let max_concurrent = max_concurrent.max(1);
        let mut random = [0u8; 32];
        openssl::rand::rand_bytes(&mut random)?;
        let decoy = PasswordHash::create(&random, DEFAULT_PARAMS)?;
        openssl::rand::rand_bytes(&mut random)?;
        Ok(Authenticator {
            users,
            decoy,
            cache_key: random,
            cache: Mutex::new(Cache::default()),
            permits: Arc::new(Semaphore::new(max_concurrent)),
            queue_wait: QUEUE_WAIT,
            stats: Arc::new(Stats::default()),
        })
    }

    /// The default bound on concurrent checks: half the cores, at least one, so that a flood of
    /// wrong passwords leaves CPU for the requests that are already authenticated.
    pub(crate) fn default_concurrency() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get() / 2)
            .unwrap_or(1)
            .max(1)
    }

    /// How many Argon2 checks ran so far.
    #[cfg(test)]
    pub(crate) fn verifications(&self) -> u64 {
        self.stats.verifications.load(Ordering::Relaxed)
    }

    /// The most Argon2 checks that ever ran at once.
    #[cfg(test)]
    pub(crate) fn max_in_flight(&self) -> usize {
        self.stats.max_in_flight.load(Ordering::Relaxed)
    }

    /// Authenticates the value of an `Authorization` header.
    pub(crate) async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Principal, Denied> {
        let (user, password) = decode_basic(authorization.ok_or(Denied::Anonymous)?)?;
        let key = self.cache_key_for(&user, &password);
        let known = self.users.users.get(&user).cloned();
        if let Some(known) = &known {
            if self.lock_cache().contains(&key) {
                return Ok(Principal {
                    user: UserName(user),
                    role: known.role,
                });
            }
        }
        let hash = known.as_ref().map_or(&self.decoy, |k| &k.hash).clone();
        let permit = tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Denied::Busy)?
            .map_err(|_| Denied::Busy)?;
        let stats = self.stats.clone();
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
            stats.verifications.fetch_add(1, Ordering::Relaxed);
            let verified = hash.verify(&password);
            stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            verified
        })
        .await;
        match (verified, known) {
            (Ok(Ok(true)), Some(known)) => {
                self.lock_cache().insert(key);
                Ok(Principal {
                    user: UserName(user),
                    role: known.role,
                })
            }
            (Ok(Err(e)), _) => {
                tracing::error!(error = %e, "checking a password failed");
                Err(Denied::WrongCredentials)
            }
            (Err(e), _) => {
                tracing::error!(error = %e, "the password check task failed");
                Err(Denied::WrongCredentials)
            }
            _ => Err(Denied::WrongCredentials),
        }
    }

    fn cache_key_for(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut hasher = openssl::sha::Sha256::new();
        hasher.update(&self.cache_key);
        hasher.update(&(user.len() as u64).to_be_bytes());
        hasher.update(user.as_bytes());
        hasher.update(password);
        hasher.finish()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache holds no invariant a panic could break half-way: keep using it.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `Basic base64(user:password)` → (user, password bytes).
fn decode_basic(value: &[u8]) -> Result<(String, Vec<u8>), Denied> {
    let text = std::str::from_utf8(value).map_err(|_| Denied::Malformed)?;
    let (scheme, encoded) = text.trim().split_once(' ').ok_or(Denied::Anonymous)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Denied::Anonymous);
    }
    let decoded = openssl::base64::decode_block(encoded.trim()).map_err(|_| Denied::Malformed)?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(Denied::Malformed)?;
    let user = std::str::from_utf8(&decoded[..colon]).map_err(|_| Denied::Malformed)?;
    Ok((user.to_string(), decoded[colon + 1..].to_vec()))
}

/// Answers a refused request after reading what is left of its body (within the body limit
/// and [`DRAIN_LIMIT`]). Over HTTP/2 an answer that leaves the request body unread resets the
/// stream, and a client still sending the body then sees a framing error (curl: "Stream error
/// in the HTTP/2 framing layer") instead of the 401 or 403.
async fn refuse(mut request: ServiceRequest, response: HttpResponse) -> ServiceResponse {
    let _ = tokio::time::timeout(DRAIN_LIMIT, request.extract::<actix_web::web::Bytes>()).await;
    request.into_response(response)
}

/// The longest a refused request's body is read before the refusal is sent anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// The 401 answer: Confluent's body and the header that makes browsers ask for a password.
pub(crate) fn unauthorized() -> HttpResponse {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, 401, "Unauthorized").error_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"schema-registry\", charset=\"UTF-8\""),
    );
    response
}

/// The 403 answer for a read-only user asking for `method path`.
pub(crate) fn forbidden(principal: &Principal, method: &Method, path: &str) -> HttpResponse {
    ApiError::new(
        StatusCode::FORBIDDEN,
        40301,
        format!(
            "User {} ({}) is denied operation {method} {path}: it changes the registry and needs the read-write role",
            principal.user.as_str(),
            principal.role.as_str()
        ),
    )
    .error_response()
}

fn busy() -> HttpResponse {
    let mut response = ApiError::http(
        StatusCode::SERVICE_UNAVAILABLE,
        Some("too many password checks in progress; retry shortly"),
    )
    .error_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// The middleware: passes everything through when auth is off (no [`Authenticator`] in the app
/// data), otherwise authenticates and authorizes each request before it reaches a handler.
pub(crate) async fn middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(authenticator) = request.app_data::<Data<Authenticator>>().cloned() else {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let access = required_access(request.method(), request.path());
    if access == Access::Open {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes().to_vec());
    let principal = match authenticator.authenticate(header.as_deref()).await {
        Ok(principal) => principal,
        Err(denied) => {
            match denied {
                Denied::Anonymous => tracing::debug!(path = request.path(), "no credentials"),
                Denied::Malformed => {
                    tracing::info!(path = request.path(), "malformed Basic credentials")
                }
                Denied::WrongCredentials => {
                    tracing::warn!(path = request.path(), "wrong user name or password")
                }
                Denied::Busy => tracing::warn!("too many password checks waiting"),
            }
            let response = if denied == Denied::Busy {
                busy()
            } else {
                unauthorized()
            };
            return Ok(refuse(request, response).await.map_into_right_body());
        }
    };
    if !principal.role.allows(access) {
        tracing::info!(
            user = principal.user.as_str(),
            method = %request.method(),
            path = request.path(),
            "write refused to a read-only user"
        );
        let response = forbidden(&principal, request.method(), request.path());
        return Ok(refuse(request, response).await.map_into_right_body());
    }
    if access == Access::Write {
        // Who changed what: the access log line that follows has the outcome.
        tracing::info!(
            user = principal.user.as_str(),
            method = %request.method(),
            path = request.path(),
            "write by an authenticated user"
        );
    }
    next.call(request)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::Params;

    const FAST: Params = Params {
        memory_kib: 64,
        iterations: 1,
        lanes: 1,
    };

    fn line(name: &str, password: &str, role: &str) -> String {
        let hash = PasswordHash::create(password.as_bytes(), FAST).expect("hash");
        format!("{name}:{}:{role}", hash.to_phc())
    }

    fn basic(user: &str, password: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            openssl::base64::encode_block(format!("{user}:{password}").as_bytes())
        )
        .into_bytes()
    }

    fn line_error(text: &str) -> (usize, String) {
        match Users::parse(text, "users.txt") {
            Err(UsersFileError::Line { line, problem, .. }) => (line, problem),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn the_file_takes_users_comments_and_blank_lines() {
        let text = format!(
            "# registry users\n\n{}\n   {}  \n",
            line("alice", "a", "read-write"),
            line("bob", "b", "read-only")
        );
        let users = Users::parse(&text, "users.txt").expect("valid");
        assert_eq!(users.len(), 2);
        assert_eq!(users.users["alice"].role, Role::ReadWrite);
        assert_eq!(users.users["bob"].role, Role::ReadOnly);
    }

    #[test]
    fn a_bad_line_is_reported_by_number_without_its_content() {
        let good = line("alice", "a", "read-write");
        let hash = good.split(':').nth(1).expect("hash").to_string();
        let (number, problem) = line_error(&format!("# users\n{good}\ncarol:{hash}:admin\n"));
        assert_eq!(number, 3);
        assert!(problem.contains("unknown role"), "{problem}");
        assert!(
            !problem.contains(&hash) && !problem.contains("admin"),
            "{problem}"
        );

        let (number, problem) = line_error("dave:not-a-hash:read-only");
        assert_eq!(number, 1);
        assert!(problem.contains("hash"), "{problem}");
        assert!(!problem.contains("not-a-hash"), "{problem}");

        let (number, problem) = line_error("\n\nerin-plain-password");
        assert_eq!(number, 3);
        assert!(!problem.contains("erin"), "{problem}");

        let (_, problem) = line_error(&format!("{good}\n{good}"));
        assert!(problem.contains("twice"), "{problem}");
        let (_, problem) = line_error(&format!("bad name:{hash}:read-only"));
        assert!(problem.contains("user name"), "{problem}");
    }

    #[test]
    fn a_file_without_users_is_refused() {
        assert!(matches!(
            Users::parse("# nobody yet\n", "users.txt"),
            Err(UsersFileError::Empty { .. })
        ));
    }

    #[test]
    fn reads_lookups_and_compatibility_checks_are_reads_and_the_rest_writes() {
        use Access::*;
        let cases = [
            (Method::GET, "/health", Open),
            (Method::GET, "/ready", Open),
            (Method::GET, "/ui", Read),
            (Method::GET, "/subjects", Read),
            (Method::HEAD, "/schemas/ids/1", Read),
            (Method::POST, "/subjects/orders-value", Read),
            (Method::POST, "/subjects/a%2Fb", Read),
            (Method::POST, "/compatibility/subjects/s/versions", Read),
            (
                Method::POST,
                "/compatibility/subjects/s/versions/latest",
                Read,
            ),
            (Method::POST, "/subjects/s/versions", Write),
            (Method::POST, "/subjects/", Write),
            (
                Method::POST,
                "/compatibility/subjects/s/versions/1/extra",
                Write,
            ),
            (Method::POST, "/health", Write),
            (Method::DELETE, "/subjects/s", Write),
            (Method::DELETE, "/subjects/s/versions/1", Write),
            (Method::PUT, "/config", Write),
            (Method::PUT, "/config/s", Write),
            (Method::DELETE, "/config", Write),
            (Method::PUT, "/mode", Write),
            (Method::DELETE, "/mode/s", Write),
            (Method::PATCH, "/subjects", Write),
        ];
        for (method, path, expected) in cases {
            assert_eq!(required_access(&method, path), expected, "{method} {path}");
        }
    }

    fn authenticator(max_concurrent: usize) -> Authenticator {
        let text = format!(
            "{}\n{}",
            line("alice", "wonderland", "read-write"),
            line("bob", "builder", "read-only")
        );
        let users = Users::parse(&text, "users.txt").expect("valid");
        Authenticator::new(users, max_concurrent).expect("authenticator")
    }

    #[tokio::test]
    async fn users_get_their_role_and_wrong_or_missing_credentials_do_not() {
        let auth = authenticator(1);
        let alice = auth.authenticate(Some(&basic("alice", "wonderland"))).await;
        assert_eq!(alice.map(|p| p.role), Ok(Role::ReadWrite));
        let bob = auth.authenticate(Some(&basic("bob", "builder"))).await;
        assert_eq!(bob.map(|p| p.role), Ok(Role::ReadOnly));
        assert_eq!(
            auth.authenticate(Some(&basic("bob", "wonderland"))).await,
            Err(Denied::WrongCredentials)
        );
        assert_eq!(
            auth.authenticate(Some(&basic("mallory", "builder"))).await,
            Err(Denied::WrongCredentials)
        );
        assert_eq!(auth.authenticate(None).await, Err(Denied::Anonymous));
        assert_eq!(
            auth.authenticate(Some(b"Bearer abc")).await,
            Err(Denied::Anonymous)
        );
        assert_eq!(
            auth.authenticate(Some(b"Basic !!!")).await,
            Err(Denied::Malformed)
        );
        let no_colon = format!("Basic {}", openssl::base64::encode_block(b"alice"));
        assert_eq!(
            auth.authenticate(Some(no_colon.as_bytes())).await,
            Err(Denied::Malformed)
        );
    }

    #[tokio::test]
    async fn a_successful_check_is_remembered_and_a_failed_one_is_not() {
        let auth = authenticator(1);
        for _ in 0..5 {
            assert!(auth
                .authenticate(Some(&basic("alice", "wonderland")))
                .await
                .is_ok());
        }
        assert_eq!(
            auth.verifications(),
            1,
            "four of five answered from the cache"
        );
        for _ in 0..3 {
            assert!(auth
                .authenticate(Some(&basic("alice", "wrong")))
                .await
                .is_err());
        }
        assert_eq!(auth.verifications(), 4, "each wrong password is checked");
        // A cached entry for alice's password does not let another user in with it.
        assert!(auth
            .authenticate(Some(&basic("bob", "wonderland")))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn while_every_check_is_taken_known_credentials_pass_and_new_ones_are_turned_away_as_busy(
    ) {
        let mut auth = authenticator(1);
        auth.queue_wait = Duration::from_millis(200);
        assert!(auth
            .authenticate(Some(&basic("alice", "wonderland")))
            .await
            .is_ok());
        // Someone holds the only turn (a flood of wrong passwords would).
        let _held = auth.permits.clone().acquire_owned().await.expect("permit");
        // A remembered user still gets in (without the cache it would wait, then be refused).
        assert!(auth
            .authenticate(Some(&basic("alice", "wonderland")))
            .await
            .is_ok());
        assert_eq!(
            auth.authenticate(Some(&basic("bob", "builder"))).await,
            Err(Denied::Busy)
        );
        assert_eq!(auth.verifications(), 1);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut cache = Cache::default();
        for i in 0..(CACHE_CAPACITY + 10) {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_be_bytes());
            cache.insert(key);
        }
        assert_eq!(cache.keys.len(), CACHE_CAPACITY);
        assert_eq!(cache.order.len(), CACHE_CAPACITY);
        assert!(!cache.contains(&[0u8; 32]), "the oldest went first");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_flood_of_wrong_passwords_runs_no_more_checks_at_once_than_allowed() {
        let auth = Arc::new(authenticator(2));
        let mut tasks = Vec::new();
        for i in 0..24 {
            let auth = auth.clone();
            // Wrong passwords for a real user, and unknown users (checked against the decoy,
            // which has the full default cost, so that checks overlap if nothing bounds them).
            let user = if i % 2 == 0 {
                "alice".to_string()
            } else {
                format!("mallory-{i}")
            };
            tasks.push(tokio::spawn(async move {
                auth.authenticate(Some(&basic(&user, &format!("guess-{i}"))))
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.expect("task"), Err(Denied::WrongCredentials));
        }
        assert_eq!(auth.verifications(), 24);
        assert!(
            auth.max_in_flight() <= 2,
            "{} checks ran at once",
            auth.max_in_flight()
        );
    }
}
