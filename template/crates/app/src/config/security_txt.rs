//! `[security_txt]`: where to report a vulnerability (OPS-3), served as
//! `/.well-known/security.txt` (RFC 9116) once a contact is set. A contact needs an expiry, and
//! every URI must be one a reporter can trust (`mailto:`, `https:`, `tel:`): a file that sends
//! reports over plain HTTP would leak them.

use serde::{Deserialize, Serialize};

use super::error::Refusals;

/// Where to report vulnerabilities (OPS-3): the fields of `/.well-known/security.txt`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityTxtSettings {
    /// `mailto:`, `https:` or `tel:` URIs, most preferred first; empty serves no file.
    pub contact: Vec<String>,
    /// When the file stops being valid (RFC 3339; less than a year ahead, renewed before then).
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    /// An `https:` URL of the disclosure policy.
    pub policy: String,
    /// An `https:` URL thanking reporters.
    pub acknowledgments: String,
    /// An `https:` URL of a key to encrypt reports with.
    pub encryption: String,
    /// Languages reports may be written in, e.g. `en, de`.
    pub preferred_languages: String,
}

impl SecurityTxtSettings {
    /// The file to serve, if a contact is configured.
    pub fn file(
        &self,
        public_origin: &str,
    ) -> Option<Result<security::disclosure::SecurityTxt, String>> {
        if self.contact.is_empty() {
            return None;
        }
        let Some(expires) = self.expires else {
            return Some(Err(
                "expires is required with a contact (RFC 9116)".to_owned()
            ));
        };
        let expires = time::OffsetDateTime::from_unix_timestamp(expires.timestamp())
            .map_err(|error| error.to_string());
        Some(expires.and_then(|expires| {
            security::disclosure::SecurityTxt::new(
                &self.contact,
                expires,
                public_origin,
                &self.policy,
                &self.acknowledgments,
                &self.encryption,
                &self.preferred_languages,
            )
            .map_err(|error| error.to_string())
        }))
    }
}

impl SecurityTxtSettings {
    /// The file must build, with its canonical URL on `public_origin`.
    pub(super) fn validate(&self, public_origin: &str, refusals: &mut Refusals) {
        if let Some(Err(problem)) = self.file(public_origin) {
            refusals.refuse("security_txt", &problem);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::{load, refused};

    #[test]
    fn a_security_txt_needs_an_expiry_and_trustworthy_uris() {
        let contact = "[security_txt]\ncontact = [\"mailto:a@example.com\"]";
        let error = refused(contact, Environment::Development);
        assert!(error.names("security_txt"), "{error}");
        let valid = format!("{contact}\nexpires = \"2099-01-01T00:00:00Z\"");
        let plain_policy = format!("{valid}\npolicy = \"http://example.com/policy\"");
        let error = refused(&plain_policy, Environment::Development);
        assert!(error.names("security_txt"), "{error}");
        load(&valid, Environment::Development, &[]).expect("valid");
    }
}
