//! The scopes of this API (AUTH-4) and what each role may be granted.
//!
//! An operation requires scopes by naming them on its credential parameter,
//! `#[oai(scope = "Scope::ApiKeysRead")] auth: Authenticated`: that one declaration is published
//! in the OpenAPI document and enforced from it by `security::auth::access_control`. A role is
//! granted the smallest set of scopes its work needs; user management and other principals'
//! keys are admin scopes (function-level authorization, AUTH-6).

use poem_openapi::OAuthScopes;

use crate::persistence::users::Role;

/// Every scope of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, OAuthScopes)]
pub enum Scope {
    /// Read your own profile.
    #[oai(rename = "profile")]
    Profile,
    /// Read your notes.
    #[oai(rename = "notes:read")]
    NotesRead,
    /// Create and delete your notes.
    #[oai(rename = "notes:write")]
    NotesWrite,
    /// Make payments (the demo charge).
    #[oai(rename = "payments:write")]
    PaymentsWrite,
    /// List your API keys.
    #[oai(rename = "api_keys:read")]
    ApiKeysRead,
    /// Create, rotate and revoke your API keys.
    #[oai(rename = "api_keys:write")]
    ApiKeysWrite,
    /// Manage every principal's API keys (admin).
    #[oai(rename = "api_keys:admin")]
    ApiKeysAdmin,
    /// Read user accounts (admin).
    #[oai(rename = "users:read")]
    UsersRead,
    /// Create user accounts (admin).
    #[oai(rename = "users:write")]
    UsersWrite,
}

/// What every user may be granted.
const USER_SCOPES: &[Scope] = &[
    Scope::Profile,
    Scope::NotesRead,
    Scope::NotesWrite,
    Scope::PaymentsWrite,
    Scope::ApiKeysRead,
    Scope::ApiKeysWrite,
];

/// What administrators may be granted in addition.
const ADMIN_SCOPES: &[Scope] = &[Scope::ApiKeysAdmin, Scope::UsersRead, Scope::UsersWrite];

/// Every scope name, for the issuer's metadata.
pub fn all_scope_names() -> Vec<&'static str> {
    USER_SCOPES
        .iter()
        .chain(ADMIN_SCOPES)
        .map(OAuthScopes::name)
        .collect()
}

/// The scopes `role` may hold.
pub fn scopes_of_role(role: Role) -> Vec<&'static str> {
    let admin: &[Scope] = match role {
        Role::Admin => ADMIN_SCOPES,
        Role::User => &[],
    };
    USER_SCOPES
        .iter()
        .chain(admin)
        .map(OAuthScopes::name)
        .collect()
}

/// `requested` narrowed to what `allowed` holds; everything allowed when nothing is requested.
pub fn narrow(requested: &[&str], allowed: &[String]) -> Vec<String> {
    if requested.is_empty() {
        return allowed.to_vec();
    }
    let mut granted: Vec<String> = requested
        .iter()
        .filter(|scope| allowed.iter().any(|held| held == *scope))
        .map(|scope| (*scope).to_owned())
        .collect();
    granted.sort();
    granted.dedup();
    granted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_hold_no_admin_scope() {
        let user = scopes_of_role(Role::User);
        for admin in ADMIN_SCOPES {
            assert!(!user.contains(&admin.name()), "{}", admin.name());
        }
        assert!(scopes_of_role(Role::Admin).contains(&"users:write"));
    }

    #[test]
    fn narrowing_keeps_only_what_is_allowed() {
        let allowed = vec!["api_keys:read".to_owned(), "profile".to_owned()];
        assert_eq!(
            narrow(&["api_keys:read", "users:write"], &allowed),
            vec!["api_keys:read"]
        );
        assert_eq!(narrow(&[], &allowed), allowed);
        assert!(narrow(&["users:write"], &allowed).is_empty());
    }
}
