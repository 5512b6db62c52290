//! TLS-1: plain HTTP. A browser navigation is redirected to the same path on the HTTPS origin
//! (never to whatever the Host header names: an open redirect), and a request carrying a
//! credential is refused rather than redirected, since the credential already crossed the
//! network in clear and a silent redirect would teach the client that this works.

use reqwest::header::{ACCEPT, AUTHORIZATION, HOST, LOCATION};

use crate::target::Target;
use crate::{Check, Finding, Status};

pub const NAVIGATION_REDIRECTED: Check = Check {
    id: "http.navigation-redirected",
    control: "TLS-1",
    title: "Plain-HTTP navigations are redirected to the same path on the HTTPS origin",
};
pub const CREDENTIALS_NOT_REDIRECTED: Check = Check {
    id: "http.credentials-not-redirected",
    control: "TLS-1",
    title: "Plain-HTTP requests carrying credentials are refused, not redirected",
};

const PROBE_PATH: &str = "/scanner-probe/path?query=kept";

pub async fn run(target: &Target) -> Vec<Finding> {
    let Some(http) = &target.http_base else {
        let detail = "no plain-HTTP URL given (--http-url) and the HTTPS port is not 443";
        return vec![
            Finding::new(&NAVIGATION_REDIRECTED, Status::NotApplicable, detail),
            Finding::new(&CREDENTIALS_NOT_REDIRECTED, Status::NotApplicable, detail),
        ];
    };
    let client = target.plain_client();
    let url = format!("{}{PROBE_PATH}", http.as_str().trim_end_matches('/'));
    let expected = target.url(PROBE_PATH);

    let navigation = client.get(&url).header(ACCEPT, "text/html").send().await;
    let navigation = match navigation {
        Err(error) if error.is_connect() || error.is_timeout() => {
            let detail =
                format!("nothing answers plain HTTP at {http} ({error}): nothing to redirect");
            return vec![
                Finding::new(
                    &NAVIGATION_REDIRECTED,
                    Status::NotApplicable,
                    detail.clone(),
                ),
                Finding::new(&CREDENTIALS_NOT_REDIRECTED, Status::NotApplicable, detail),
            ];
        }
        Err(error) => Finding::new(&NAVIGATION_REDIRECTED, Status::Fail, error.to_string()),
        Ok(response) => {
            let status = response.status().as_u16();
            let location = location(&response);
            if !matches!(status, 301 | 302 | 307 | 308) {
                Finding::new(
                    &NAVIGATION_REDIRECTED,
                    Status::Fail,
                    format!("GET {url} answered {status}, not a redirect to HTTPS"),
                )
            } else if location != expected {
                Finding::new(
                    &NAVIGATION_REDIRECTED,
                    Status::Fail,
                    format!("GET {url} went to {location:?}, not {expected}"),
                )
            } else {
                forged_host(&client, &url, status, &location).await
            }
        }
    };

    let credentialed = client
        .get(&url)
        .header(AUTHORIZATION, "Bearer scanner-probe-credential")
        .send()
        .await;
    let credentialed = match credentialed {
        Err(error) => Finding::new(
            &CREDENTIALS_NOT_REDIRECTED,
            Status::NotApplicable,
            format!("no answer: {error}"),
        ),
        Ok(response) => {
            let status = response.status().as_u16();
            if status == 429 {
                Finding::new(
                    &CREDENTIALS_NOT_REDIRECTED,
                    Status::NotApplicable,
                    "answered 429: rate-limited, not judged",
                )
            } else if (400..500).contains(&status) {
                Finding::new(
                    &CREDENTIALS_NOT_REDIRECTED,
                    Status::Pass,
                    format!("a request with Authorization over plain HTTP answered {status}"),
                )
            } else {
                Finding::new(
                    &CREDENTIALS_NOT_REDIRECTED,
                    Status::Fail,
                    format!("a request with Authorization over plain HTTP answered {status}"),
                )
            }
        }
    };
    vec![navigation, credentialed]
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The redirect must not follow an attacker's Host header (an open redirect). A server that
/// refuses the unknown host outright (404, 421) is fine too; only a Location naming it fails.
async fn forged_host(client: &reqwest::Client, url: &str, status: u16, location: &str) -> Finding {
    const FORGED: &str = "scanner-attacker.invalid";
    let forged = client
        .get(url)
        .header(ACCEPT, "text/html")
        .header(HOST, FORGED)
        .send()
        .await;
    let followed = match &forged {
        Ok(response) => self::location(response),
        Err(error) => {
            return Finding::new(
                &NAVIGATION_REDIRECTED,
                Status::NotApplicable,
                format!(
                    "{status} to {location}, but the request with a forged Host got no answer: \
                     {error}"
                ),
            );
        }
    };
    match followed {
        target if target.contains(FORGED) => Finding::new(
            &NAVIGATION_REDIRECTED,
            Status::Fail,
            format!("with Host: {FORGED} the redirect went to {target:?}: an open redirect"),
        ),
        _ => Finding::new(
            &NAVIGATION_REDIRECTED,
            Status::Pass,
            format!("{status} to {location}; a forged Host header does not choose the target"),
        ),
    }
}
