//! openraft wiring: the type configuration, applying entries, and the network between replicas.
pub mod apply;
pub mod network;
pub mod types;
