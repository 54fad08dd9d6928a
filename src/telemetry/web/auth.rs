//! Basic and bearer authentication of a port, from its `web_config_file`.
//!
//! Credentials are checked against bcrypt hashes, as Prometheus does:
//! `basic_auth_users` maps a user to the hash of its password, and the
//! anomalyd extension `bearer_tokens` maps a name (for the operator) to the
//! hash of a token (`Authorization: Bearer <token>`, what Prometheus sends
//! with `authorization: {credentials_file: …}`). bcrypt is slow on purpose
//! (tens of milliseconds at cost 10), so:
//!
//! - a verification runs on the blocking pool, never on the threads that
//!   answer requests, and at most [`VERIFYING`] run at once: a flood of
//!   wrong passwords queues behind them instead of eating every core;
//! - credentials that verified once are remembered by their SHA-256 digest
//!   (never in the clear), so a sender that authenticates every request
//!   pays bcrypt once.
//!
//! An unknown user is checked against a real hash anyway, so the answer
//! takes as long as for a known user with a wrong password.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use base64::Engine;
use tokio::sync::Semaphore;

use super::webconfig::WebConfig;

/// bcrypt verifications running at once, per port.
pub const VERIFYING: usize = 2;

/// Verified credentials remembered; the memory starts over beyond this.
const REMEMBERED: usize = 1024;

/// Why a request was refused 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    Missing,
    /// A scheme this port does not take, or a header that does not parse.
    #[error("the Authorization header is malformed or of a scheme this port does not accept")]
    Malformed,
    /// Unknown user, wrong password or unknown token.
    #[error("wrong credentials")]
    Rejected,
}

/// The credentials of one request.
enum Credentials {
    Basic { user: String, password: String },
    Bearer(String),
}

impl Credentials {
    /// The memory key: SHA-256 of the scheme and the secret.
    fn digest(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        match self {
            Self::Basic { user, password } => {
                ctx.update(b"basic\0");
                ctx.update(user.as_bytes());
                ctx.update(b"\0");
                ctx.update(password.as_bytes());
            }
            Self::Bearer(token) => {
                ctx.update(b"bearer\0");
                ctx.update(token.as_bytes());
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// The users and tokens of one port.
pub struct Auth {
    /// User → bcrypt hash of the password.
    basic: BTreeMap<String, String>,
    /// bcrypt hashes of accepted bearer tokens, by name.
    bearer: BTreeMap<String, String>,
    /// Digests of credentials that verified.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Bounds the bcrypt work in progress.
    verifying: Semaphore,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("users", &self.basic.keys().collect::<Vec<_>>())
            .field("tokens", &self.bearer.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Auth {
    /// The port's authentication, or `None` when the file names no user
    /// and no token (then every request is let through).
    pub fn new(config: &WebConfig) -> Option<Self> {
        if config.basic_auth_users.is_empty() && config.bearer_tokens.is_empty() {
            return None;
        }
        Some(Self {
            basic: config.basic_auth_users.clone(),
            bearer: config.bearer_tokens.clone(),
            verified: Mutex::default(),
            verifying: Semaphore::new(VERIFYING),
        })
    }

    /// Checks a request's `Authorization` header.
    pub async fn check(self: &Arc<Self>, headers: &HeaderMap) -> Result<(), AuthError> {
        let credentials = self.credentials(headers)?;
        let digest = credentials.digest();
        if self.remembered().contains(&digest) {
            return Ok(());
        }
        let _permit = self
            .verifying
            .acquire()
            .await
            .map_err(|_| AuthError::Rejected)?;
        let me = Arc::clone(self);
        let ok = tokio::task::spawn_blocking(move || me.verify(&credentials))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(AuthError::Rejected);
        }
        let mut verified = self.remembered();
        if verified.len() >= REMEMBERED {
            verified.clear();
        }
        verified.insert(digest);
        Ok(())
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // A set of digests: valid whatever a panicking holder left.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn credentials(&self, headers: &HeaderMap) -> Result<Credentials, AuthError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?
            .to_str()
            .map_err(|_| AuthError::Malformed)?;
        let (scheme, rest) = value.split_once(' ').ok_or(AuthError::Malformed)?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") && !self.basic.is_empty() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| AuthError::Malformed)?;
            let text = String::from_utf8(raw).map_err(|_| AuthError::Malformed)?;
            let (user, password) = text.split_once(':').ok_or(AuthError::Malformed)?;
            Ok(Credentials::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            })
        } else if scheme.eq_ignore_ascii_case("bearer") && !self.bearer.is_empty() {
            Ok(Credentials::Bearer(rest.to_owned()))
        } else {
            Err(AuthError::Malformed)
        }
    }

    /// The bcrypt check itself (blocking).
    fn verify(&self, credentials: &Credentials) -> bool {
        match credentials {
            Credentials::Basic { user, password } => match self.basic.get(user) {
                Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
                None => {
                    // As slow as a known user: no telling users apart by
                    // the time a refusal takes.
                    if let Some(any) = self.basic.values().next() {
                        let _ = bcrypt::verify(password, any);
                    }
                    false
                }
            },
            Credentials::Bearer(token) => self
                .bearer
                .values()
                .any(|hash| bcrypt::verify(token, hash).unwrap_or(false)),
        }
    }

    /// The 401 answer, naming the schemes this port accepts.
    pub fn challenge(&self) -> Response<Body> {
        let mut r = Response::new(Body::from("401 Unauthorized: credentials required\n"));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        let h = r.headers_mut();
        if !self.basic.is_empty() {
            h.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"anomalyd\""),
            );
        }
        if !self.bearer.is_empty() {
            h.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"anomalyd\""),
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Arc<Auth> {
        // Cost 4, the least bcrypt allows: fast tests.
        let config = WebConfig {
            basic_auth_users: BTreeMap::from([(
                "prom".to_owned(),
                bcrypt::hash("s3cret", 4).unwrap(),
            )]),
            bearer_tokens: BTreeMap::from([("ci".to_owned(), bcrypt::hash("tok-123", 4).unwrap())]),
            ..WebConfig::default()
        };
        Arc::new(Auth::new(&config).unwrap())
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers(&format!("Basic {b}"))
    }

    #[tokio::test]
    async fn basic_and_bearer_credentials_are_checked_against_bcrypt_hashes() {
        let a = auth();
        assert_eq!(a.check(&basic("prom", "s3cret")).await, Ok(()));
        // Remembered by digest: the second check needs no bcrypt.
        assert_eq!(a.remembered().len(), 1);
        assert_eq!(a.check(&basic("prom", "s3cret")).await, Ok(()));
        assert_eq!(
            a.check(&basic("prom", "wrong")).await,
            Err(AuthError::Rejected)
        );
        assert_eq!(
            a.check(&basic("nobody", "s3cret")).await,
            Err(AuthError::Rejected)
        );
        assert_eq!(a.check(&headers("Bearer tok-123")).await, Ok(()));
        assert_eq!(
            a.check(&headers("Bearer tok-124")).await,
            Err(AuthError::Rejected)
        );
        assert_eq!(a.check(&HeaderMap::new()).await, Err(AuthError::Missing));
        assert_eq!(
            a.check(&headers("Basic !!!")).await,
            Err(AuthError::Malformed)
        );
        assert_eq!(
            a.check(&headers("Digest x")).await,
            Err(AuthError::Malformed)
        );
        let c = a.challenge();
        assert_eq!(c.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            c.headers().get_all(header::WWW_AUTHENTICATE).iter().count(),
            2
        );
    }

    #[test]
    fn no_users_and_no_tokens_means_no_authentication() {
        assert!(Auth::new(&WebConfig::default()).is_none());
    }
}
