//! `POST /v1/weakened/probe`: an operation whose request object is closed only by the published
//! document, never in code.
//!
//! The service closes every request object twice: `#[oai(deny_unknown_fields)]` on the type and
//! `additionalProperties: false` in the document that `StrictJson` enforces. The scanner's
//! `input.unknown-fields-rejected` sends an unknown field to every operation with a JSON body,
//! so with the document left open the service's own objects still refuse it in code, and the
//! check could not fail. This operation, served by the harness in every run, has the document
//! alone to close it: refused (400) when unknown-field rejection is on, accepted when it is off.

use app::auth::scheme::Authenticated;
use app::auth::scopes::Scope;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

/// The harness's operations in the document.
#[derive(Debug, Tags)]
enum HarnessTags {
    /// The weakened-builds harness only.
    Weakened,
}

/// A body closed by the document only: no `deny_unknown_fields` on purpose.
#[derive(Debug, Object)]
pub struct Probe {
    #[oai(validator(max_length = 100))]
    pub text: String,
}

#[derive(Debug, ApiResponse)]
pub enum ProbeResponse {
    /// The body was accepted.
    #[oai(status = 204)]
    Accepted,
}

/// The harness's extra operation.
#[derive(Debug, Default)]
pub struct ProbeApi;

#[OpenApi(prefix_path = "/v1", tag = "HarnessTags::Weakened")]
impl ProbeApi {
    /// Accepts a small body and answers nothing (the weakened-builds harness only).
    #[oai(path = "/weakened/probe", method = "post")]
    async fn probe(
        &self,
        #[oai(scope = "Scope::Profile")] _auth: Authenticated,
        _body: Json<Probe>,
    ) -> ProbeResponse {
        ProbeResponse::Accepted
    }
}
