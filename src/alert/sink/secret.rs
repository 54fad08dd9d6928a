//! The auth header of the HTTP sinks.
//!
//! This module owns [`AuthConfig`]: which header carries a token, and where
//! the token comes from (an environment variable or a file, never the config
//! file; see [`crate::config::secret`]).

use std::path::PathBuf;

use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::SinkBuildError;
use crate::config::Problems;
use crate::config::secret::read_secret;

/// The `auth` sub-section of an HTTP sink: an optional header carrying a
/// token. The token itself comes from `token_env` or `token_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Header name.
    pub header: String,
    /// Text put before the token with a space (`Bearer` gives
    /// `Authorization: Bearer <token>`); empty sends the token alone.
    pub scheme: String,
    /// Name of an environment variable holding the token.
    pub token_env: Option<String>,
    /// Path of a file holding the token (trailing newline ignored), e.g. a
    /// mounted Kubernetes secret.
    pub token_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            header: "Authorization".to_owned(),
            scheme: "Bearer".to_owned(),
            token_env: None,
            token_file: None,
        }
    }
}

impl AuthConfig {
    /// Records every problem under `prefix` (e.g. `sinks.webhook.auth`).
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            !(self.token_env.is_some() && self.token_file.is_some()),
            format!("{prefix}.token_file"),
            "set either token_env or token_file, not both",
        );
        problems.check(
            HeaderName::from_bytes(self.header.as_bytes()).is_ok(),
            format!("{prefix}.header"),
            format!("`{}` is not a valid HTTP header name", self.header),
        );
        problems.check(
            self.token_env.as_deref() != Some(""),
            format!("{prefix}.token_env"),
            "is empty; name an environment variable or remove the key",
        );
    }

    /// Reads the token (and drops it), as the sink will when it starts:
    /// an unset variable, a missing or empty file, or a token that cannot
    /// be sent in a header is a problem at its key (`prefix` is this
    /// section's key).
    pub fn check_secret(
        &self,
        prefix: &str,
        env: &dyn Fn(&str) -> Option<String>,
        problems: &mut Problems,
    ) {
        match self.header(prefix, env) {
            Ok(_) => {}
            Err(SinkBuildError::Secret(e)) => problems.push(e.key(), e.reason()),
            Err(SinkBuildError::BadSecret { key }) => problems.push(
                key,
                "the token contains characters not allowed in an HTTP header",
            ),
            Err(SinkBuildError::Config { key, message }) => problems.push(key, message),
            Err(e) => problems.push(prefix, e.to_string()),
        }
    }

    /// The header to send, if a token source is configured. `prefix` is
    /// this section's key.
    pub fn header(
        &self,
        prefix: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<(HeaderName, HeaderValue)>, SinkBuildError> {
        let key = if self.token_env.is_some() {
            format!("{prefix}.token_env")
        } else {
            format!("{prefix}.token_file")
        };
        let Some(token) = read_secret(
            &key,
            self.token_env.as_deref(),
            self.token_file.as_deref(),
            env,
        )?
        else {
            return Ok(None);
        };
        let name =
            HeaderName::from_bytes(self.header.as_bytes()).map_err(|_| SinkBuildError::Config {
                key: format!("{prefix}.header"),
                message: format!("`{}` is not a valid HTTP header name", self.header),
            })?;
        let text = if self.scheme.is_empty() {
            token.expose().to_owned()
        } else {
            format!("{} {}", self.scheme, token.expose())
        };
        let mut value =
            HeaderValue::from_str(&text).map_err(|_| SinkBuildError::BadSecret { key })?;
        // Keeps the value out of hyper's and reqwest's Debug output.
        value.set_sensitive(true);
        Ok(Some((name, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_from_env_and_file() {
        let env = |k: &str| (k == "TOKEN").then(|| "abc".to_owned());
        let auth = AuthConfig {
            token_env: Some("TOKEN".into()),
            ..AuthConfig::default()
        };
        let (n, v) = auth.header("sinks.webhook.auth", &env).unwrap().unwrap();
        assert_eq!(n.as_str(), "authorization");
        assert_eq!(v.to_str().unwrap(), "Bearer abc");
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("abc"));

        let missing = AuthConfig {
            token_env: Some("NOPE".into()),
            ..AuthConfig::default()
        };
        let err = missing
            .header("sinks.webhook.auth", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sinks.webhook.auth.token_env") && err.contains("NOPE"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok");
        std::fs::write(&path, "s3cret\n").unwrap();
        let file = AuthConfig {
            header: "X-Api-Key".into(),
            scheme: String::new(),
            token_env: None,
            token_file: Some(path),
        };
        let (n, v) = file.header("a", &env).unwrap().unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-api-key", "s3cret"));

        assert!(AuthConfig::default().header("a", &env).unwrap().is_none());
    }

    #[test]
    fn validate_names_keys() {
        let a = AuthConfig {
            header: "bad header".into(),
            scheme: "Bearer".into(),
            token_env: Some("X".into()),
            token_file: Some("/x".into()),
        };
        let mut p = Problems::new();
        a.validate("s.auth", &mut p);
        let keys: Vec<_> = p.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["s.auth.token_file", "s.auth.header"]);
    }
}
