//! SMS to the petitioner (and results back to the 12345 hotline): the gateways a host sends through ([`gateway`]) and the sender that
//! drains an office's notification outbox on its leader ([`sender`]). Which notices a case change
//! makes is the case engine's ([`liandong_domain::notify`]); they commit with the change in the
//! office's state machine (`crate::machine::notify`).

pub mod gateway;
pub mod sender;

pub use gateway::{Gateway, GatewaySpec, Message};
pub use sender::{Gateways, Notifier, NotifyStats, CRASH_AFTER_SMS_FILE};
