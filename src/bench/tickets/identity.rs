//! Who the tickets bench acts as: the tenant and JWT realm every request
//! names (`x-tenantid`, `realmname`), and the run's users, each a JWT
//! subject of that realm with a token the bench signs itself.
//!
//! Invariants: subjects are `tk-<run>-<label><index>`, so two runs never
//! share a user (nor an inbox); tokens live for the whole planned run plus
//! a slack; roles go in the token's `roles` claim (`admin`, `agent`, or none
//! for a requester), which is all the server reads to decide a role.

use super::args::TicketsArgs;
use crate::bench::error::BenchError;
use crate::bench::poll::api::realm_from;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The tenant and realm of a run, and the realm's signing secret.
#[derive(Debug, Clone)]
pub struct Realm {
    /// The tenant's UUID (`x-tenantid`).
    pub tenant: String,
    /// The realm's name (`realmname`).
    pub name: String,
    /// Its HS256 secret.
    secret: String,
}

impl Realm {
    /// The realm of the flags: `--jwt-secret`/`--tenant`, else what
    /// `DATA_DIR/config.json` seeds for `--realm`.
    pub fn resolve(args: &TicketsArgs) -> Result<Self, BenchError> {
        let seeded = || realm_from(&args.server.data_dir, &args.realm);
        let secret = match &args.jwt_secret {
            Some(secret) if !secret.trim().is_empty() => secret.trim().to_string(),
            Some(_) => return Err(BenchError::usage("--jwt-secret is empty")),
            None => seeded()?.hs256_secret,
        };
        let tenant = match &args.tenant {
            Some(tenant) => tenant.trim().to_string(),
            None => seeded()?.tenant_id,
        };
        if uuid::Uuid::parse_str(&tenant).is_err() {
            return Err(BenchError::usage(format!(
                "the tenant `{tenant}` is not a UUID (give --tenant)"
            )));
        }
        Ok(Self {
            tenant,
            name: args.realm.clone(),
            secret,
        })
    }

    /// Signs a token for `subject` with `roles`, valid for `lifetime`.
    pub fn identity(
        &self,
        subject: String,
        roles: &[&str],
        lifetime: Duration,
    ) -> Result<Identity, BenchError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let claims = json!({
            "sub": subject,
            "iat": now,
            "exp": now + lifetime.as_secs(),
            "roles": roles,
        });
        let token = crate::auth::jwt::mint_hs256(&self.secret, &claims, None)
            .map_err(|err| BenchError::usage(format!("cannot mint a user token: {err}")))?;
        Ok(Identity { subject, token })
    }
}

/// A user: its JWT subject and signed token.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The JWT `sub` (the user id tickets name).
    pub subject: String,
    /// The signed token.
    pub token: String,
}

/// The users of one population of a run, by index.
#[derive(Debug, Clone)]
pub struct Population {
    /// Their identities, user `i` at index `i`.
    pub users: Vec<Identity>,
}

impl Population {
    /// `count` users `tk-<run>-<label><i>` with `roles`.
    pub fn mint(
        realm: &Realm,
        run: &str,
        label: &str,
        count: usize,
        roles: &[&str],
        lifetime: Duration,
    ) -> Result<Self, BenchError> {
        let users = (0..count)
            .map(|index| realm.identity(subject(run, label, index), roles, lifetime))
            .collect::<Result<_, _>>()?;
        Ok(Self { users })
    }

    /// The subjects, by index.
    pub fn subjects(&self) -> Vec<String> {
        self.users.iter().map(|user| user.subject.clone()).collect()
    }

    /// The tokens, by index.
    pub fn tokens(&self) -> Vec<String> {
        self.users.iter().map(|user| user.token.clone()).collect()
    }
}

/// The subject of user `index` of population `label` of run `run`.
pub fn subject(run: &str, label: &str, index: usize) -> String {
    format!("tk-{run}-{label}{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realm() -> Realm {
        Realm {
            tenant: "7e0c0a3e-8a34-4a4b-9d7c-2c1f2b3c4d5e".into(),
            name: "default".into(),
            secret: "jws_0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        }
    }

    #[test]
    fn users_get_distinct_subjects_and_tokens_with_their_roles() {
        let agents = Population::mint(&realm(), "r1", "a", 3, &["agent"], Duration::from_secs(60))
            .expect("mints");
        assert_eq!(agents.subjects()[2], "tk-r1-a2");
        let tokens = agents.tokens();
        assert_ne!(tokens[0], tokens[1]);
        let payload = tokens[0].split('.').nth(1).expect("a JWT");
        let claims = String::from_utf8(
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .expect("base64url"),
        )
        .expect("utf-8");
        assert!(claims.contains(r#""roles":["agent"]"#), "{claims}");
        assert!(claims.contains(r#""sub":"tk-r1-a0""#), "{claims}");
    }

    #[test]
    fn a_short_secret_cannot_sign() {
        let weak = Realm {
            secret: "short".into(),
            ..realm()
        };
        assert!(
            weak.identity("x".into(), &[], Duration::from_secs(1))
                .is_err()
        );
    }
}
