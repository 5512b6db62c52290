//! The one small handler the bench measures twice: `GET /v1/bench/ping` behind every layer of
//! the service, as any operation (a bearer token verified, its `profile` scope checked, the rate
//! limit charged, headers, request id, metrics and audit events), and bare in [`crate::baseline`].

use app::auth::scheme::Authenticated;
use app::auth::scopes::Scope;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

/// The small JSON body both configurations answer.
#[derive(Debug, Object, serde::Serialize)]
pub struct Pong {
    pub status: String,
}

/// The handler both configurations run.
pub fn ping() -> Pong {
    Pong {
        status: "ok".to_owned(),
    }
}

/// The tag of the bench's operation in the document.
#[derive(Debug, Tags)]
enum BenchTags {
    /// The benchmark's operation (`bench-service` only).
    Bench,
}

/// `GET /v1/bench/ping`, behind the whole stack.
#[derive(Debug, Default)]
pub struct BenchApi;

#[derive(Debug, ApiResponse)]
pub enum PingResponse {
    /// The service answers.
    #[oai(status = 200)]
    Ok(Json<Pong>),
}

#[OpenApi(prefix_path = "/v1", tag = "BenchTags::Bench")]
impl BenchApi {
    /// Answers a small JSON body (the bench's service only).
    #[oai(path = "/bench/ping", method = "get")]
    async fn ping(&self, #[oai(scope = "Scope::Profile")] _auth: Authenticated) -> PingResponse {
        PingResponse::Ok(Json(ping()))
    }
}
