//! Authentication: JWT verification for connecting devices and token signing for the `token`
//! command. The identity of a peer comes from its verified token and from nothing it says
//! about itself: a client's self-declared `senderId` is used only to address replies to it.
//!
//! Keys live in [`Authenticator`], held by `AppState`, never in statics. With no key
//! configured, an HS256 secret is generated in the data directory on first start (mode 0600)
//! and reused afterwards.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use lianxin_protocol::domain::Actor;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::settings::AuthSettings;
use crate::state::AppState;
use crate::storage::registry::{Device, User};
use crate::storage::{StorageError, Store};

/// The claims of a Lianxin token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// The user's role (secretary, grid_worker, volunteer, …).
    pub role: String,
    /// The area path the user is bound to.
    pub scope: String,
    /// The device the token was issued to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

/// A verified peer: who is on the other end of a connection. The token says who they are;
/// their role, area and department come from the registry, read at every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub claims: Claims,
    pub user: User,
    pub device: Device,
    /// The user as the field rules see them.
    pub actor: Actor,
}

impl Identity {
    /// Stable key of this device for server-side sync state.
    pub fn peer_key(&self) -> Option<String> {
        Some(format!("{}/{}", self.user.id, self.device.id))
    }
}

/// Why a token was refused. The text is sent to the client, so it names the problem without
/// echoing the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing token: send `Authorization: Bearer <token>` or `?token=<token>`")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token lives longer than this server accepts ({max} s)")]
    TooLong { max: u64 },
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token audience is not accepted")]
    BadAudience,
    #[error("token issuer is not accepted")]
    BadIssuer,
    #[error("token is malformed or incomplete: {0}")]
    Malformed(String),
    #[error("this server cannot sign tokens: no private key configured")]
    CannotSign,
    #[error("key setup failed: {0}")]
    Key(String),
    #[error("token names no device")]
    NoDevice,
    #[error("unknown user {0}")]
    UnknownUser(String),
    #[error("user {0} is revoked")]
    UserRevoked(String),
    #[error("unknown device {0}")]
    UnknownDevice(String),
    #[error("device {device} is not bound to user {user}")]
    WrongDevice { device: String, user: String },
    #[error("device {0} is revoked")]
    DeviceRevoked(String),
}

/// Verifies (and, when it has a private key, signs) tokens.
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    algorithm: Algorithm,
    issuer: String,
    audience: String,
    leeway: u64,
    /// Longest accepted lifetime (`exp - iat`) of a token, in seconds.
    max_ttl: u64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the authenticator from settings, generating an HS256 secret in `data_dir` when no
    /// key is configured.
    pub fn from_settings(settings: &AuthSettings, data_dir: &Path) -> Result<Self, AuthError> {
        let key_err = |e: &dyn std::fmt::Display| AuthError::Key(e.to_string());
        let (decoding, encoding, algorithm) = if let Some(public) = &settings.public_key_file {
            let pem = std::fs::read(public).map_err(|e| key_err(&e))?;
            let private = match &settings.private_key_file {
                Some(path) => Some(std::fs::read(path).map_err(|e| key_err(&e))?),
                None => None,
            };
            match settings.algorithm.as_deref().unwrap_or("RS256") {
                "RS256" => (
                    DecodingKey::from_rsa_pem(&pem).map_err(|e| key_err(&e))?,
                    private
                        .map(|p| EncodingKey::from_rsa_pem(&p))
                        .transpose()
                        .map_err(|e| key_err(&e))?,
                    Algorithm::RS256,
                ),
                "EdDSA" => (
                    DecodingKey::from_ed_pem(&pem).map_err(|e| key_err(&e))?,
                    private
                        .map(|p| EncodingKey::from_ed_pem(&p))
                        .transpose()
                        .map_err(|e| key_err(&e))?,
                    Algorithm::EdDSA,
                ),
                other => return Err(AuthError::Key(format!("unsupported algorithm {other}"))),
            }
        } else {
            let secret = match &settings.hs256_secret {
                Some(secret) => secret.expose_secret().as_bytes().to_vec(),
                None => load_or_create_secret(data_dir)?,
            };
            (
                DecodingKey::from_secret(&secret),
                Some(EncodingKey::from_secret(&secret)),
                Algorithm::HS256,
            )
        };
        Ok(Self {
            decoding,
            encoding,
            algorithm,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway_secs,
            max_ttl: settings.max_token_ttl_secs,
        })
    }

    /// Verifies signature, `exp`, `nbf` (when present), `iss` and `aud`, and that the token's
    /// lifetime is bounded: it must carry `iat`, not be issued in the future (beyond the
    /// leeway), and `exp - iat` must not exceed `auth.max_token_ttl_secs`. Without the `iat`
    /// checks a leaked token signed with a far `exp` (or a far `iat`) would stay good for
    /// years.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let mut validation = Validation::new(self.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAudience => AuthError::BadAudience,
                ErrorKind::InvalidIssuer => AuthError::BadIssuer,
                ErrorKind::InvalidAlgorithm => AuthError::BadSignature,
                _ => AuthError::Malformed(e.to_string()),
            },
        )?;
        let claims = data.claims;
        if claims.iat > unix_now() + self.leeway {
            return Err(AuthError::NotYetValid);
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_ttl {
            return Err(AuthError::TooLong { max: self.max_ttl });
        }
        Ok(claims)
    }

    /// Signs a token for `sub` valid for `ttl_secs`.
    pub fn issue(&self, request: &TokenRequest) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::CannotSign)?;
        if request.ttl_secs > self.max_ttl {
            // It would be refused: say so now rather than hand out a token that never works.
            return Err(AuthError::TooLong { max: self.max_ttl });
        }
        let now = unix_now();
        let claims = Claims {
            sub: request.sub.clone(),
            role: request.role.clone(),
            scope: request.scope.clone(),
            device: request.device.clone(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + request.ttl_secs,
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| AuthError::Key(e.to_string()))
    }
}

/// What a token should say.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub sub: String,
    pub role: String,
    pub scope: String,
    pub device: Option<String>,
    pub ttl_secs: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads `data_dir/jwt-hs256.key`, creating it with 32 random bytes on first use.
fn load_or_create_secret(data_dir: &Path) -> Result<Vec<u8>, AuthError> {
    let key_err = |e: std::io::Error| AuthError::Key(e.to_string());
    let path = data_dir.join("jwt-hs256.key");
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= 32 => return Ok(secret),
        Ok(_) => {
            return Err(AuthError::Key(format!(
                "{} is shorter than 32 bytes",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(key_err(e)),
    }
    std::fs::create_dir_all(data_dir).map_err(key_err)?;
    let secret: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(&path) {
        Ok(mut file) => {
            use std::io::Write;
            file.write_all(&secret).map_err(key_err)?;
            tracing::info!(path = %path.display(), "generated a new token signing key");
            Ok(secret.to_vec())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(&path).map_err(key_err)
        }
        Err(e) => Err(key_err(e)),
    }
}

/// Extractor: the verified identity of the caller, from `Authorization: Bearer …` or, since
/// browsers cannot set headers on websockets, from `?token=…`. Rejects with 401.
pub struct Authenticated(pub Identity);

impl<S> FromRequestParts<S> for Authenticated
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = bearer_token(parts)
            .or_else(|| query_token(parts))
            .ok_or_else(|| ApiError::Unauthorized(AuthError::Missing.to_string()))?;
        let refused = |e: AuthError| {
            state.metrics.auth_failures.inc();
            ApiError::Unauthorized(e.to_string())
        };
        let claims = state.auth.verify(&token).map_err(refused)?;
        // Counted once the signature is known good (so the key is a real user), before the
        // registry is read.
        state.rate_limit.check(&claims.sub).map_err(|wait| {
            ApiError::TooManyRequests(
                format!("too many requests from user {}; slow down", claims.sub),
                wait,
            )
        })?;
        let identity = resolve(&state.store, claims).await.map_err(|e| match e {
            Resolve::Refused(e) => refused(e),
            Resolve::Storage(e) => {
                state.metrics.storage_errors.inc();
                tracing::error!(error = %e, "reading the registry failed");
                ApiError::Unavailable("storage unavailable, try again later".into())
            }
        })?;
        Ok(Authenticated(identity))
    }
}

/// Why claims did not resolve to a known, active user and device.
#[derive(Debug)]
pub enum Resolve {
    Refused(AuthError),
    Storage(StorageError),
}

/// Looks up the user and device a verified token names, refusing unknown or revoked ones and a
/// device bound to someone else.
pub async fn resolve(store: &Store, claims: Claims) -> Result<Identity, Resolve> {
    let device_id = claims
        .device
        .clone()
        .ok_or(Resolve::Refused(AuthError::NoDevice))?;
    let user = store
        .get_user(&claims.sub)
        .await
        .map_err(Resolve::Storage)?
        .ok_or_else(|| Resolve::Refused(AuthError::UnknownUser(claims.sub.clone())))?;
    if user.revoked {
        return Err(Resolve::Refused(AuthError::UserRevoked(user.id)));
    }
    let device = store
        .get_device(&device_id)
        .await
        .map_err(Resolve::Storage)?
        .ok_or_else(|| Resolve::Refused(AuthError::UnknownDevice(device_id.clone())))?;
    if device.user_id != user.id {
        return Err(Resolve::Refused(AuthError::WrongDevice {
            device: device.id,
            user: user.id,
        }));
    }
    if device.revoked {
        return Err(Resolve::Refused(AuthError::DeviceRevoked(device.id)));
    }
    let actor = Actor {
        user: user.id.clone(),
        role: user.role.parse().map_err(|_| {
            Resolve::Refused(AuthError::Malformed(format!(
                "user {} has an unknown role",
                user.id
            )))
        })?,
        area: user.area.parse().map_err(|_| {
            Resolve::Refused(AuthError::Malformed(format!(
                "user {} has an invalid area",
                user.id
            )))
        })?,
        department: user.department.clone(),
    };
    Ok(Identity {
        claims,
        user,
        device,
        actor,
    })
}

fn bearer_token(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?;
    let value = value.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_string())
}

fn query_token(parts: &Parts) -> Option<String> {
    let query = parts.uri.query()?;
    form_urlencoded_pairs(query).find_map(|(k, v)| (k == "token").then_some(v))
}

/// Splits `a=b&c=d`, percent-decoding values. Kept tiny on purpose: only `token` is read.
fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        Some((percent_decode(k), percent_decode(v)))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn authenticator(dir: &Path) -> Authenticator {
        Authenticator::from_settings(&AuthSettings::default(), dir).unwrap()
    }

    fn request() -> TokenRequest {
        TokenRequest {
            sub: "u1".into(),
            role: "secretary".into(),
            scope: "/city/street".into(),
            device: Some("phone-1".into()),
            ttl_secs: 60,
        }
    }

    #[test]
    fn issued_token_verifies_and_generated_key_is_reused() {
        let dir = std::env::temp_dir().join(format!("lianxin-auth-{}", rand::random::<u64>()));
        let token = authenticator(&dir).issue(&request()).unwrap();
        // A second authenticator on the same data dir reads the same key.
        let claims = authenticator(&dir).verify(&token).unwrap();
        assert_eq!(claims.sub, "u1");
        assert_eq!(claims.device.as_deref(), Some("phone-1"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tampered_token_is_a_bad_signature() {
        let dir = std::env::temp_dir().join(format!("lianxin-auth-{}", rand::random::<u64>()));
        let auth = authenticator(&dir);
        let token = auth.issue(&request()).unwrap();
        // Flip one character in the middle of the signature: still valid base64url, wrong MAC.
        let sig_start = token.rfind('.').unwrap() + 1;
        let mut bytes = token.into_bytes();
        let i = sig_start + 5;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let token = String::from_utf8(bytes).unwrap();
        assert!(matches!(auth.verify(&token), Err(AuthError::BadSignature)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn eddsa_public_key_verifies_and_rejects_other_keys() {
        // A key pair made for this test only.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests_fixtures");
        let settings = AuthSettings {
            public_key_file: Some(fixtures.join("ed25519-test-public.pem")),
            private_key_file: Some(fixtures.join("ed25519-test-private.pem")),
            algorithm: Some("EdDSA".into()),
            ..AuthSettings::default()
        };
        let dir = std::env::temp_dir().join(format!("lianxin-auth-{}", rand::random::<u64>()));
        let auth = Authenticator::from_settings(&settings, &dir).unwrap();
        let token = auth.issue(&request()).unwrap();
        assert_eq!(auth.verify(&token).unwrap().role, "secretary");
        // No secret was generated: the configured key is the only one.
        assert!(!dir.exists());
        // An HS256 token made with some other secret is refused by the EdDSA verifier.
        let hs = authenticator(&dir).issue(&request()).unwrap();
        assert!(matches!(auth.verify(&hs), Err(AuthError::BadSignature)));
        // A verifier without the private key cannot sign.
        let verify_only = Authenticator::from_settings(
            &AuthSettings {
                private_key_file: None,
                ..settings
            },
            &dir,
        )
        .unwrap();
        assert!(matches!(
            verify_only.issue(&request()),
            Err(AuthError::CannotSign)
        ));
        assert!(verify_only.verify(&token).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    const SECRET: &str = "unit-test-secret-unit-test-secret";

    fn with_secret() -> Authenticator {
        let settings = AuthSettings {
            hs256_secret: Some(SecretString::from(SECRET)),
            ..AuthSettings::default()
        };
        Authenticator::from_settings(&settings, Path::new("/nonexistent")).unwrap()
    }

    /// Signs arbitrary claims with [`SECRET`]: what a holder of the key (or a buggy issuer)
    /// could make.
    fn signed(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn claims_at(now: u64) -> serde_json::Value {
        serde_json::json!({
            "sub": "u1", "role": "secretary", "scope": "/city", "device": "phone-1",
            "iss": "lianxin", "aud": "lianxin-sync", "iat": now, "exp": now + 3600,
        })
    }

    #[test]
    fn not_before_is_checked() {
        let auth = with_secret();
        let now = unix_now();
        let mut claims = claims_at(now);
        claims["nbf"] = (now + 3600).into();
        assert!(matches!(
            auth.verify(&signed(claims.clone())),
            Err(AuthError::NotYetValid)
        ));
        // Within the leeway, and in the past, it is fine.
        claims["nbf"] = (now + 10).into();
        assert!(auth.verify(&signed(claims.clone())).is_ok());
        claims["nbf"] = (now - 60).into();
        assert!(auth.verify(&signed(claims)).is_ok());
    }

    #[test]
    fn token_lifetime_is_bounded() {
        let auth = with_secret();
        let max = AuthSettings::default().max_token_ttl_secs;
        let now = unix_now();
        // exp - iat over the maximum.
        let mut claims = claims_at(now);
        claims["exp"] = (now + max + 1).into();
        assert!(matches!(
            auth.verify(&signed(claims.clone())),
            Err(AuthError::TooLong { .. })
        ));
        // Exactly the maximum is accepted.
        claims["exp"] = (now + max).into();
        assert!(auth.verify(&signed(claims.clone())).is_ok());
        // Without `iat` the lifetime is unknown: refused.
        claims.as_object_mut().unwrap().remove("iat");
        assert!(matches!(
            auth.verify(&signed(claims)),
            Err(AuthError::Malformed(_))
        ));
        // Issued in the future (which would stretch its life past the maximum): refused.
        let mut claims = claims_at(now + 10 * 365 * 24 * 3600);
        claims["exp"] = (now + 10 * 365 * 24 * 3600 + 60).into();
        assert!(matches!(
            auth.verify(&signed(claims)),
            Err(AuthError::NotYetValid)
        ));
    }

    #[test]
    fn the_token_command_signs_within_the_maximum_only() {
        let auth = with_secret();
        // The README's `--ttl 86400` (the command's default too).
        let day = TokenRequest {
            ttl_secs: 86_400,
            ..request()
        };
        assert!(auth.verify(&auth.issue(&day).unwrap()).is_ok());
        let too_long = TokenRequest {
            ttl_secs: AuthSettings::default().max_token_ttl_secs + 1,
            ..request()
        };
        assert!(matches!(
            auth.issue(&too_long),
            Err(AuthError::TooLong { .. })
        ));
    }

    #[test]
    fn percent_decoding_of_query_tokens() {
        assert_eq!(percent_decode("a%2Eb+c"), "a.b c");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
    }
}
