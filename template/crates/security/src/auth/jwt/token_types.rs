//! Which tokens are access tokens: the `typ` header values an issuer's access tokens carry
//! ([`AcceptedTokenTypes`], `at+jwt` by default, RFC 9068) and the claims only ID tokens carry
//! ([`ID_TOKEN_CLAIMS`]). An OpenID provider signs its ID tokens with the keys of its access
//! tokens, and their `aud` may be this API: only these two tell an ID token presented as a
//! credential apart.

use super::JwtConfigError;

/// The `typ` header of an access token (RFC 9068, section 2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Claims of OpenID Connect ID tokens that no access token needs: a token carrying one is an ID
/// token, whatever its `typ` says.
pub const ID_TOKEN_CLAIMS: [&str; 3] = ["nonce", "at_hash", "c_hash"];

/// The `typ` header values an issuer's access tokens may carry. Compared without regard to case
/// and with or without the `application/` prefix (RFC 7515, section 4.1.9); the empty entry
/// `""` accepts a token without `typ`.
///
/// The default, `at+jwt` only, refuses an issuer's ID tokens (`typ: JWT`) even where their
/// `aud` names this API. Providers whose access tokens say `JWT`, or nothing, can only be
/// trusted by accepting that, and then only [`ID_TOKEN_CLAIMS`] tell their ID tokens apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedTokenTypes(Vec<String>);

impl Default for AcceptedTokenTypes {
    fn default() -> Self {
        Self(vec![ACCESS_TOKEN_TYPE.to_owned()])
    }
}

impl AcceptedTokenTypes {
    /// `types` as configured: at least one, each `""` or a media type (`at+jwt`, `JWT`,
    /// `application/at+jwt`).
    pub fn new<S: AsRef<str>>(types: &[S]) -> Result<Self, JwtConfigError> {
        if types.is_empty() {
            return Err(JwtConfigError::NoTokenType);
        }
        let media_type = |typ: &str| {
            typ.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"+-./_".contains(&byte))
        };
        types
            .iter()
            .map(|typ| {
                let typ = typ.as_ref();
                media_type(typ)
                    .then(|| normalized_type(typ))
                    .ok_or_else(|| JwtConfigError::InvalidTokenType(typ.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether a token whose header says `typ` (`None`: no `typ`) is of an accepted type.
    pub fn accepts(&self, typ: Option<&str>) -> bool {
        let typ = normalized_type(typ.unwrap_or_default());
        self.0.contains(&typ)
    }
}

/// `typ` lowercased, without the optional `application/` prefix.
fn normalized_type(typ: &str) -> String {
    let typ = typ.to_ascii_lowercase();
    match typ.strip_prefix("application/") {
        Some(short) => short.to_owned(),
        None => typ,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_types_ignore_case_and_the_media_type_prefix_and_empty_means_untyped() {
        let types = AcceptedTokenTypes::new(&["JWT", ""]).expect("types");
        for typ in [
            Some("JWT"),
            Some("jwt"),
            Some("application/JWT"),
            None,
            Some(""),
        ] {
            assert!(types.accepts(typ), "{typ:?}");
        }
        assert!(!types.accepts(Some("at+jwt")));
        let default = AcceptedTokenTypes::default();
        assert!(default.accepts(Some("application/at+jwt")));
        assert!(!default.accepts(None));
        assert_eq!(
            AcceptedTokenTypes::new::<&str>(&[]),
            Err(JwtConfigError::NoTokenType)
        );
        assert_eq!(
            AcceptedTokenTypes::new(&["at jwt"]),
            Err(JwtConfigError::InvalidTokenType("at jwt".to_owned()))
        );
    }
}
