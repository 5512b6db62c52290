//! `bench-service params`: the password hashing parameters the bench reports beside login's
//! cost.

use app::config::Settings;
use security::auth::password::{ARGON2_ITERATIONS, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM};

/// The parameters of every password hash, and how many run at once.
pub fn password_hashing(settings: &Settings) -> serde_json::Value {
    serde_json::json!({
        "algorithm": "argon2id",
        "memory_kib": ARGON2_MEMORY_KIB,
        "iterations": ARGON2_ITERATIONS,
        "parallelism": ARGON2_PARALLELISM,
        "max_concurrent": settings.auth.password_hashes_at_once(),
    })
}
