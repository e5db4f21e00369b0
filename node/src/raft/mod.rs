//! openraft wiring: the type configuration and what goes through the log (`types`), and the
//! network between replicas (`network`). Applying entries is `machine`'s.
pub mod network;
pub mod types;
