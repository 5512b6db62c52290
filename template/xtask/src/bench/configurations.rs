//! The configurations measured, (a) to (g): each a request sent over and over by wrk to one of
//! the instances; and the wrong logins of the flood that (g) runs under.

use super::credentials::Credentials;
use super::instances::Instance;

/// One configuration: a request, sent over and over by wrk.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: &'static str,
    pub name: &'static str,
    pub instance: Instance,
    pub method: &'static str,
    pub path: &'static str,
    pub body: Option<String>,
    pub content_type: Option<&'static str>,
    pub bearer: bool,
    /// (g): measured while the wrong-login flood runs.
    pub under_flood: bool,
}

/// Every configuration, (c) only when the Redis instance runs (`redis`).
pub fn all(credentials: &Credentials, redis: bool) -> Vec<Config> {
    let ping = |id, name, instance, under_flood| Config {
        id,
        name,
        instance,
        method: "GET",
        path: "/v1/bench/ping",
        body: None,
        content_type: None,
        bearer: true,
        under_flood,
    };
    let mut configs = vec![
        ping(
            "a",
            "baseline: bare handler, same TLS listener",
            Instance::Baseline,
            false,
        ),
        ping(
            "b",
            "full stack: JWT, scope, rate limit, headers, audit",
            Instance::Memory,
            false,
        ),
    ];
    if redis {
        configs.push(ping(
            "c",
            "full stack, rate limits in Redis",
            Instance::Redis,
            false,
        ));
    }
    configs.extend([
        Config {
            id: "d",
            name: "token: client_credentials",
            instance: Instance::Memory,
            method: "POST",
            path: "/oauth/token",
            body: Some(credentials.token_body.clone()),
            content_type: Some("application/x-www-form-urlencoded"),
            bearer: false,
            under_flood: false,
        },
        Config {
            id: "e",
            name: "login: Argon2id",
            instance: Instance::Memory,
            method: "POST",
            path: "/v1/auth/login",
            body: Some(credentials.login_body.clone()),
            content_type: Some("application/json"),
            bearer: false,
            under_flood: false,
        },
        Config {
            id: "f",
            name: "own record: GET /v1/me (database read)",
            instance: Instance::Memory,
            method: "GET",
            path: "/v1/me",
            body: None,
            content_type: None,
            bearer: true,
            under_flood: false,
        },
        ping(
            "g",
            "isolation: (b) during 200 wrong logins (CPU includes the flood's)",
            Instance::Memory,
            true,
        ),
    ]);
    configs
}

/// The request of the wrong-login flood: a wrong password for the administrator.
pub fn wrong_login(credentials: &Credentials) -> Config {
    Config {
        id: "flood",
        name: "wrong logins",
        instance: Instance::Memory,
        method: "POST",
        path: "/v1/auth/login",
        body: Some(credentials.wrong_login_body.clone()),
        content_type: Some("application/json"),
        bearer: false,
        under_flood: false,
    }
}
