//! `web_config_file`: TLS and authentication of a port, in the format of
//! Prometheus' `--web.config.file` (the exporter-toolkit's), so one file
//! can serve Prometheus, its exporters and anomalyd:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative paths: to this file's directory
//!   key_file: server.key
//!   client_auth_type: NoClientCert # or RequireAndVerifyClientCert,
//!                                  #    VerifyClientCertIfGiven
//!   client_ca_file: clients-ca.crt # needed when clients are verified
//!   min_version: TLS12             # TLS12 or TLS13
//!   max_version: TLS13
//! http_server_config:
//!   http2: false                   # accepted; anomalyd serves HTTP/1.1 only
//! basic_auth_users:
//!   prometheus: $2y$10$…           # bcrypt hash of the password
//! # anomalyd's extension (Prometheus' own tools refuse this key):
//! bearer_tokens:
//!   ci-pipeline: $2y$10$…          # bcrypt hash of the token
//! ```
//!
//! Every key is checked: a typo, a key of the format anomalyd does not
//! implement (`cipher_suites`, `curve_preferences`, `client_allowed_sans`,
//! `headers`, TLS 1.0/1.1…) or a value that is not a bcrypt hash is an
//! error naming the key, not a silently weaker setup. The file is read
//! when the daemon starts (and by `check-config`); a change needs a
//! restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use yaml_rust2::{Yaml, YamlLoader};

/// Why a web config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file (or a file it names) cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not YAML.
    #[error("{path}: not valid YAML: {detail}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        detail: String,
    },
    /// A key or value is wrong; the message names the key and the fix.
    #[error("{path}: {key}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key inside the file.
        key: String,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// The certificate or key is unusable.
    #[error("{path}: tls_server_config: {detail}")]
    Tls {
        /// The web config file.
        path: PathBuf,
        /// What rustls or the PEM reader said.
        detail: String,
    },
}

/// Whether and how clients present certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// `NoClientCert` (the default).
    #[default]
    None,
    /// `VerifyClientCertIfGiven`: optional, verified when given.
    VerifyIfGiven,
    /// `RequireAndVerifyClientCert`.
    Require,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLS12`.
    Tls12,
    /// `TLS13`.
    Tls13,
}

/// `tls_server_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// Client certificates.
    pub client_auth: ClientAuth,
    /// PEM CA certificates that sign client certificates.
    pub client_ca_file: Option<PathBuf>,
    /// Oldest version spoken.
    pub min_version: TlsVersion,
    /// Newest version spoken.
    pub max_version: TlsVersion,
}

/// A parsed web config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    /// `tls_server_config`, when present.
    pub tls: Option<TlsSettings>,
    /// `basic_auth_users`: user → bcrypt hash.
    pub basic_auth_users: BTreeMap<String, String>,
    /// `bearer_tokens` (anomalyd's extension): name → bcrypt hash.
    pub bearer_tokens: BTreeMap<String, String>,
}

/// Keys of Prometheus' format that anomalyd does not implement.
const UNSUPPORTED: [&str; 7] = [
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
    "cert",
    "key",
    "client_ca",
];

impl WebConfig {
    /// Reads and checks `path`; files it names are taken relative to its
    /// directory.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(tls) = &mut config.tls {
            for f in [&mut tls.cert_file, &mut tls.key_file] {
                *f = dir.join(&*f);
            }
            if let Some(ca) = &mut tls.client_ca_file {
                *ca = dir.join(&*ca);
            }
        }
        Ok(config)
    }

    /// Parses the text of a file at `path` (for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, WebConfigError> {
        let invalid = |key: &str, detail: String| WebConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            detail,
        };
        let docs = YamlLoader::load_from_str(text).map_err(|e| WebConfigError::Yaml {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        let mut config = Self::default();
        let root = match docs.as_slice() {
            [] | [Yaml::Null] => return Ok(config),
            [root @ Yaml::Hash(_)] => root,
            _ => {
                return Err(invalid(
                    "(top level)",
                    "must be one YAML mapping with tls_server_config, basic_auth_users, ...".into(),
                ));
            }
        };
        for (k, v) in entries(root, "(top level)", path)? {
            match k.as_str() {
                "tls_server_config" => config.tls = Some(tls_settings(v, path)?),
                "http_server_config" => {
                    for (k, v) in entries(v, "http_server_config", path)? {
                        match k.as_str() {
                            // HTTP/2 or not, anomalyd speaks HTTP/1.1 only.
                            "http2" if matches!(v, Yaml::Boolean(_)) => {}
                            "http2" => {
                                return Err(invalid(
                                    "http_server_config.http2",
                                    "must be true or false".into(),
                                ));
                            }
                            other => {
                                return Err(invalid(
                                    &format!("http_server_config.{other}"),
                                    "is not supported by anomalyd; remove it".into(),
                                ));
                            }
                        }
                    }
                }
                "basic_auth_users" => {
                    config.basic_auth_users = hashes(v, "basic_auth_users", path)?;
                }
                "bearer_tokens" => config.bearer_tokens = hashes(v, "bearer_tokens", path)?,
                other => {
                    return Err(invalid(
                        other,
                        "is not a key of the web config file; the keys are tls_server_config, \
                         http_server_config, basic_auth_users and bearer_tokens"
                            .into(),
                    ));
                }
            }
        }
        Ok(config)
    }
}

/// The string entries of a mapping (`null`, as an empty section, has none).
fn entries<'a>(
    y: &'a Yaml,
    key: &str,
    path: &Path,
) -> Result<Vec<(String, &'a Yaml)>, WebConfigError> {
    match y {
        Yaml::Null => Ok(Vec::new()),
        Yaml::Hash(h) => h
            .iter()
            .map(|(k, v)| match k {
                Yaml::String(s) => Ok((s.clone(), v)),
                _ => Err(WebConfigError::Invalid {
                    path: path.to_owned(),
                    key: key.to_owned(),
                    detail: format!("keys must be strings, found {k:?}"),
                }),
            })
            .collect(),
        _ => Err(WebConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            detail: "must be a mapping".into(),
        }),
    }
}

fn string(y: &Yaml, key: &str, path: &Path) -> Result<String, WebConfigError> {
    match y {
        Yaml::String(s) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(WebConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            detail: "must be a non-empty string".into(),
        }),
    }
}

/// A mapping of names to bcrypt hashes.
fn hashes(y: &Yaml, key: &str, path: &Path) -> Result<BTreeMap<String, String>, WebConfigError> {
    let mut out = BTreeMap::new();
    for (name, v) in entries(y, key, path)? {
        let k = format!("{key}.{name}");
        let hash = string(v, &k, path)?;
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(WebConfigError::Invalid {
                path: path.to_owned(),
                key: k,
                detail: "is not a bcrypt hash ($2y$…, 60 characters); make one with \
                         `htpasswd -nbBC 10 \"\" PASSWORD | tr -d ':\\n'`"
                    .into(),
            });
        }
        out.insert(name, hash);
    }
    Ok(out)
}

fn version(y: &Yaml, key: &str, path: &Path) -> Result<TlsVersion, WebConfigError> {
    match string(y, key, path)?.as_str() {
        "TLS12" => Ok(TlsVersion::Tls12),
        "TLS13" => Ok(TlsVersion::Tls13),
        other => Err(WebConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            detail: format!("`{other}` is not supported; write TLS12 or TLS13"),
        }),
    }
}

fn tls_settings(y: &Yaml, path: &Path) -> Result<TlsSettings, WebConfigError> {
    let invalid = |key: String, detail: String| WebConfigError::Invalid {
        path: path.to_owned(),
        key,
        detail,
    };
    let (mut cert, mut key, mut ca) = (None, None, None);
    let mut client_auth = ClientAuth::None;
    let (mut min, mut max) = (TlsVersion::Tls12, TlsVersion::Tls13);
    for (k, v) in entries(y, "tls_server_config", path)? {
        let full = format!("tls_server_config.{k}");
        match k.as_str() {
            "cert_file" => cert = Some(PathBuf::from(string(v, &full, path)?)),
            "key_file" => key = Some(PathBuf::from(string(v, &full, path)?)),
            "client_ca_file" => ca = Some(PathBuf::from(string(v, &full, path)?)),
            "client_auth_type" => {
                client_auth = match string(v, &full, path)?.as_str() {
                    "NoClientCert" => ClientAuth::None,
                    "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
                    "RequireAndVerifyClientCert" => ClientAuth::Require,
                    other => {
                        return Err(invalid(
                            full,
                            format!(
                                "`{other}` is not supported; write NoClientCert, \
                                 VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                            ),
                        ));
                    }
                }
            }
            "min_version" => min = version(v, &full, path)?,
            "max_version" => max = version(v, &full, path)?,
            other if UNSUPPORTED.contains(&other) => {
                return Err(invalid(
                    full,
                    "is not supported by anomalyd (it uses rustls' safe defaults); remove it"
                        .into(),
                ));
            }
            _ => {
                return Err(invalid(
                    full,
                    "is not a key of tls_server_config; the keys are cert_file, key_file, \
                     client_auth_type, client_ca_file, min_version and max_version"
                        .into(),
                ));
            }
        }
    }
    let cert_file =
        cert.ok_or_else(|| invalid("tls_server_config.cert_file".into(), "is missing".into()))?;
    let key_file =
        key.ok_or_else(|| invalid("tls_server_config.key_file".into(), "is missing".into()))?;
    if client_auth != ClientAuth::None && ca.is_none() {
        return Err(invalid(
            "tls_server_config.client_ca_file".into(),
            "is needed to verify client certificates".into(),
        ));
    }
    if min > max {
        return Err(invalid(
            "tls_server_config.min_version".into(),
            "is newer than max_version".into(),
        ));
    }
    Ok(TlsSettings {
        cert_file,
        key_file,
        client_auth,
        client_ca_file: ca,
        min_version: min,
        max_version: max,
    })
}

impl TlsSettings {
    /// The rustls configuration (certificates read now). `config_path` is
    /// the web config file, for messages.
    pub fn server_config(
        &self,
        config_path: &Path,
    ) -> Result<Arc<rustls::ServerConfig>, WebConfigError> {
        let tls_err = |detail: String| WebConfigError::Tls {
            path: config_path.to_owned(),
            detail,
        };
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| WebConfigError::Read {
                path: p.to_owned(),
                source,
            })
        };
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read(&self.cert_file)?)
                .collect::<Result<_, _>>()
                .map_err(|e| tls_err(format!("cert_file {}: {e}", self.cert_file.display())))?;
        if certs.is_empty() {
            return Err(tls_err(format!(
                "cert_file {} holds no PEM certificate",
                self.cert_file.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key_file)?)
            .map_err(|e| tls_err(format!("key_file {}: {e}", self.key_file.display())))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
            (TlsVersion::Tls12, &rustls::version::TLS12),
            (TlsVersion::Tls13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| (self.min_version..=self.max_version).contains(v))
        .map(|(_, p)| p)
        .collect();
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .map_err(|e| tls_err(e.to_string()))?;
        let builder = match (&self.client_ca_file, self.client_auth) {
            (Some(ca), auth) if auth != ClientAuth::None => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&read(ca)?) {
                    let c =
                        c.map_err(|e| tls_err(format!("client_ca_file {}: {e}", ca.display())))?;
                    roots
                        .add(c)
                        .map_err(|e| tls_err(format!("client_ca_file {}: {e}", ca.display())))?;
                }
                let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                );
                if auth == ClientAuth::VerifyIfGiven {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier.build().map_err(|e| tls_err(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| tls_err(format!("the certificate and key do not fit: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$04$Hm0pLnYyNBbh2AlIyN7aYuvKGp8lGzi8aQyZ11YDvPu31wdrmIzHe";

    fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(text, Path::new("web.yml"))
    }

    #[test]
    fn prometheus_format_with_the_bearer_extension_parses() {
        let c = parse(&format!(
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS13\n\
             http_server_config:\n  http2: false\n\
             basic_auth_users:\n  prom: {HASH}\n\
             bearer_tokens:\n  ci: {HASH}\n"
        ))
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("a.crt"));
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert_eq!(tls.client_auth, ClientAuth::None);
        assert_eq!(c.basic_auth_users["prom"], HASH);
        assert_eq!(c.bearer_tokens["ci"], HASH);
        assert_eq!(parse("").unwrap(), WebConfig::default());
    }

    #[test]
    fn mistakes_name_the_key() {
        for (text, key) in [
            (
                "tls_server_config:\n  key_file: a.key\n",
                "tls_server_config.cert_file",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n",
                "tls_server_config.cipher_suites",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n",
                "tls_server_config.min_version",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
                "tls_server_config.client_ca_file",
            ),
            (
                "basic_auth_users:\n  prom: plaintext\n",
                "basic_auth_users.prom",
            ),
            ("basic_auth_user:\n  prom: x\n", "basic_auth_user"),
            (
                "http_server_config:\n  headers: {}\n",
                "http_server_config.headers",
            ),
        ] {
            match parse(text) {
                Err(WebConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(parse("a: [b"), Err(WebConfigError::Yaml { .. })));
    }

    #[test]
    fn relative_files_are_taken_from_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(
            &path,
            "tls_server_config:\n  cert_file: a.crt\n  key_file: /abs/a.key\n",
        )
        .unwrap();
        let tls = WebConfig::load(&path).unwrap().tls.unwrap();
        assert_eq!(tls.cert_file, dir.path().join("a.crt"));
        assert_eq!(tls.key_file, PathBuf::from("/abs/a.key"));
        // Missing certificate files are named.
        let err = tls.server_config(&path).unwrap_err().to_string();
        assert!(err.contains("a.crt"), "{err}");
    }
}
