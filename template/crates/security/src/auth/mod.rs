//! Authentication and authorization controls (AUTH-*).

pub mod jwt;
