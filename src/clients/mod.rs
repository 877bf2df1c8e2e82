//! Clients of outside services that several check kinds share.
//!
//! A check kind stays one file in `src/checks/`; what more than one kind needs to talk
//! to the same service (the AWS SDK's configuration, error mapping and call metrics)
//! lives here, so that the kinds agree on it.

pub mod aws;
