//! `/.well-known/security.txt` (RFC 9116): where to report a vulnerability (OPS-3).
//!
//! Threat: someone who finds a vulnerability has no way to tell the owners, so it is sold,
//! published, or reported to whoever answers first.
//!
//! Control: the service publishes its disclosure contacts in the standard place, as configured
//! (`[security_txt]`): at least one `Contact` (`mailto:`, `https:` or `tel:`), the `Expires` the
//! RFC requires (so stale contacts stop being trusted), the `Canonical` URL on the public origin,
//! and optionally a policy, acknowledgments page, encryption key and preferred languages. The
//! file is plain text and public; with no contact configured it is not served (404). Start-up
//! refuses other links than `https:` and any value with a line break (which would forge fields);
//! the service warns at production start-up when no contact is set, and at any start-up once the
//! file has expired.
//!
//! The rest of OPS-3 is outside the service: `SECURITY.md` says how to report a vulnerability,
//! and the project's CI workflow runs weekly on a schedule (its full CI and `cargo xtask scan`),
//! so new advisories and scanner findings surface without a commit.

use poem::http::{Method, StatusCode};
use poem::{Endpoint, Request, Response};
use time::OffsetDateTime;

/// The path the file is served at.
pub const SECURITY_TXT_PATH: &str = "/.well-known/security.txt";

/// Why a `security.txt` could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityTxtError {
    #[error("contact {0:?} must be a mailto:, https: or tel: URI")]
    Contact(String),
    #[error("{field} {value:?} must be an https: URL")]
    NotHttps { field: &'static str, value: String },
    #[error("a value contains a line break")]
    LineBreak,
}

/// The fields of the file (RFC 9116, section 2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityTxt {
    contacts: Vec<String>,
    expires: OffsetDateTime,
    canonical: String,
    policy: Option<String>,
    acknowledgments: Option<String>,
    encryption: Option<String>,
    preferred_languages: Option<String>,
}

fn https(field: &'static str, value: &str) -> Result<Option<String>, SecurityTxtError> {
    if value.is_empty() {
        return Ok(None);
    }
    if !value.starts_with("https://") {
        return Err(SecurityTxtError::NotHttps {
            field,
            value: value.to_owned(),
        });
    }
    Ok(Some(value.to_owned()))
}

impl SecurityTxt {
    /// A file naming `contacts`, valid until `expires`, served from `public_origin`. Optional
    /// fields are empty strings when absent.
    pub fn new(
        contacts: &[String],
        expires: OffsetDateTime,
        public_origin: &str,
        policy: &str,
        acknowledgments: &str,
        encryption: &str,
        preferred_languages: &str,
    ) -> Result<Self, SecurityTxtError> {
        let every_value = contacts.iter().map(String::as_str).chain([
            public_origin,
            policy,
            acknowledgments,
            encryption,
            preferred_languages,
        ]);
        if every_value
            .clone()
            .any(|value| value.contains(['\r', '\n']))
        {
            return Err(SecurityTxtError::LineBreak);
        }
        for contact in contacts {
            let scheme_ok = ["mailto:", "https://", "tel:"]
                .iter()
                .any(|scheme| contact.starts_with(scheme) && contact.len() > scheme.len());
            if !scheme_ok {
                return Err(SecurityTxtError::Contact(contact.clone()));
            }
        }
        Ok(Self {
            contacts: contacts.to_vec(),
            expires,
            canonical: format!("{}{SECURITY_TXT_PATH}", public_origin.trim_end_matches('/')),
            policy: https("policy", policy)?,
            acknowledgments: https("acknowledgments", acknowledgments)?,
            encryption: https("encryption", encryption)?,
            preferred_languages: (!preferred_languages.is_empty())
                .then(|| preferred_languages.to_owned()),
        })
    }

    /// Whether `Expires` has passed at `now`: the file then tells readers not to trust it.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        self.expires <= now
    }

    /// The file's text: one `Field: value` line each, CRLF-free.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for contact in &self.contacts {
            text.push_str(&format!("Contact: {contact}\n"));
        }
        // RFC 3339 in UTC, whole seconds.
        let at = self.expires.to_offset(time::UtcOffset::UTC);
        text.push_str(&format!(
            "Expires: {:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z\n",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ));
        for (field, value) in [
            ("Encryption", &self.encryption),
            ("Acknowledgments", &self.acknowledgments),
            ("Preferred-Languages", &self.preferred_languages),
            ("Policy", &self.policy),
        ] {
            if let Some(value) = value {
                text.push_str(&format!("{field}: {value}\n"));
            }
        }
        text.push_str(&format!("Canonical: {}\n", self.canonical));
        text
    }

    /// `GET` (and `HEAD`) of the file, as `text/plain; charset=utf-8`.
    pub fn endpoint(&self) -> impl Endpoint<Output = Response> + use<> {
        let body = self.render();
        poem::endpoint::make_sync(move |request: Request| {
            if matches!(*request.method(), Method::GET | Method::HEAD) {
                Response::builder()
                    .content_type("text/plain; charset=utf-8")
                    .body(body.clone())
            } else {
                Response::builder()
                    .status(StatusCode::METHOD_NOT_ALLOWED)
                    .header("allow", "GET, HEAD")
                    .finish()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2027-06-30T12:00:00.250Z
    fn expires() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(1_814_356_800_250_000_000).expect("a date")
    }

    fn file(contacts: &[&str], policy: &str) -> Result<SecurityTxt, SecurityTxtError> {
        let contacts: Vec<String> = contacts
            .iter()
            .map(|contact| (*contact).to_owned())
            .collect();
        SecurityTxt::new(
            &contacts,
            expires(),
            "https://api.example.com/",
            policy,
            "",
            "",
            "en, de",
        )
    }

    #[test]
    fn the_file_has_the_fields_rfc_9116_requires_in_its_format() {
        let text = file(
            &["mailto:security@example.com", "https://example.com/report"],
            "https://example.com/disclosure",
        )
        .expect("valid")
        .render();
        assert_eq!(
            text,
            "Contact: mailto:security@example.com\n\
             Contact: https://example.com/report\n\
             Expires: 2027-06-30T12:00:00Z\n\
             Preferred-Languages: en, de\n\
             Policy: https://example.com/disclosure\n\
             Canonical: https://api.example.com/.well-known/security.txt\n"
        );
    }

    #[test]
    fn contacts_and_links_must_be_uris_a_reader_can_trust() {
        assert_eq!(
            file(&["security@example.com"], "").err(),
            Some(SecurityTxtError::Contact("security@example.com".to_owned()))
        );
        assert_eq!(
            file(&["mailto:"], "").err(),
            Some(SecurityTxtError::Contact("mailto:".to_owned()))
        );
        assert!(matches!(
            file(&["mailto:a@example.com"], "http://example.com/policy").err(),
            Some(SecurityTxtError::NotHttps { .. })
        ));
        assert_eq!(
            file(
                &["mailto:a@example.com\nContact: mailto:evil@example.net"],
                ""
            )
            .err(),
            Some(SecurityTxtError::LineBreak)
        );
    }

    #[test]
    fn expiry_is_reported() {
        let file = file(&["mailto:a@example.com"], "").expect("valid");
        assert!(!file.is_expired_at(expires() - time::Duration::days(1)));
        assert!(file.is_expired_at(expires()));
    }
}
