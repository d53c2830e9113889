use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{Principal, Role};
use crate::config::{JwtKey, JwtSettings};
use super::AuthError;

/// The claims Berth reads (and `berth token` writes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// An array of role names; a single string is taken too (some identity providers
    /// emit one), and a space-separated string is split.
    #[serde(default, deserialize_with = "roles_claim")]
    pub roles: Vec<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
    /// Every other claim: the team is read from `team`, or the claim
    /// `BERTH_JWT_TEAM_CLAIM` names.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

fn roles_claim<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Roles {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Roles>::deserialize(d)? {
        None => Vec::new(),
        Some(Roles::One(s)) => s.split_whitespace().map(String::from).collect(),
        Some(Roles::Many(v)) => v,
    })
}

/// Verifies bearer tokens with one fixed algorithm.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    team_claim: String,
}

impl JwtVerifier {
    pub fn new(settings: &JwtSettings) -> anyhow::Result<Self> {
        let (key, algorithm) = match &settings.key {
            JwtKey::Secret(secret) => (
                DecodingKey::from_secret(secret.expose_secret().as_bytes()).context("using BERTH_JWT_SECRET")?,
                Algorithm::HS256,
            ),
            JwtKey::PublicKey { algorithm, pem } => {
                let key = match algorithm {
                    Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
                    _ => DecodingKey::from_rsa_pem(pem),
                }
                .context("parsing the JWT public key")?;
                (key, *algorithm)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = settings.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // A configured issuer/audience must be present in the token, not merely not
        // contradicted: jsonwebtoken only compares iss/aud when the token carries them.
        let mut required = vec!["exp", "sub"];
        if settings.issuer.is_some() {
            required.push("iss");
        }
        if settings.audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        match &settings.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &settings.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Self { key, validation, team_claim: settings.team_claim.clone() })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    "the token is signed with an algorithm this server does not accept"
                }
                ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted",
                ErrorKind::InvalidAudience => "the token's audience (aud) is not accepted",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim (exp, sub, and iss/aud where configured)",
                _ => "the token is malformed",
            };
            AuthError(format!("Invalid bearer token: {why}."))
        })?;
        let role = data.claims.roles.iter().filter_map(|r| Role::parse(r)).max();
        let mut principal = Principal::new(data.claims.sub, role, data.claims.exp);
        match data.claims.other.get(&self.team_claim) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(team)) if super::is_team_name(team) => {
                principal.team = team.clone();
                principal.team_claimed = true;
            }
            Some(_) => {
                return Err(AuthError(format!(
                    "Invalid bearer token: the `{}` claim must be a team name ([a-z0-9][a-z0-9_.-]{{0,62}}).",
                    self.team_claim
                )));
            }
        }
        Ok(principal)
    }
}

/// Sign an HS256 token for `sub` with `role`, valid for `ttl` (no team: team `default`).
pub fn mint_token(settings: &JwtSettings, sub: &str, roles: &[Role], ttl: Duration) -> anyhow::Result<String> {
    mint_team_token(settings, sub, roles, None, ttl)
}

/// Sign an HS256 token for `sub` with `roles` in `team`, valid for `ttl`.
pub fn mint_team_token(
    settings: &JwtSettings,
    sub: &str,
    roles: &[Role],
    team: Option<&str>,
    ttl: Duration,
) -> anyhow::Result<String> {
    if let Some(t) = team.filter(|t| !super::is_team_name(t)) {
        anyhow::bail!("`{t}` is not a team name: use [a-z0-9][a-z0-9_.-]{{0,62}}");
    }
    let mut other = serde_json::Map::new();
    if let Some(t) = team {
        other.insert(settings.team_claim.clone(), serde_json::Value::String(t.to_string()));
    }
    let JwtKey::Secret(secret) = &settings.key else {
        anyhow::bail!("`berth token` signs with BERTH_JWT_SECRET; with a public key, mint tokens with your identity provider");
    };
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: sub.to_string(),
        roles: roles.iter().map(|r| r.as_str().to_string()).collect(),
        exp: now + ttl.as_secs(),
        nbf: Some(now),
        iat: Some(now),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone().map(serde_json::Value::String),
        other,
    };
    let key = EncodingKey::from_secret(secret.expose_secret().as_bytes()).context("using BERTH_JWT_SECRET")?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).context("signing the token")
}
