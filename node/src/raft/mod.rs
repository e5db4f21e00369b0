//! openraft wiring: the type configuration and what goes through the log (`types`), and the
//! network between replicas (`network`); officer accounts and audit records (`people`). Applying entries is `machine`'s.
pub mod network;
pub mod people;
pub mod types;
