//! Outbound: everything sonde sends over the network and the API clients the kinds use.
//!
//! `http.rs` builds the agents every kind shares (TLS, resolver, the connection trace
//! returned with each response); the API clients on top of it speak one service each:
//! `oci.rs` container registries, `kube.rs` the Kubernetes API server. Nothing here
//! knows about checks, metrics or the config file's layout beyond the keys a client
//! itself is configured with.

pub mod dockerhub;
pub mod http;
pub mod image_ref;
pub mod kube;
pub mod oci;
#[cfg(test)]
pub mod prop;
pub mod secret;
