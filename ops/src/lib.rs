//! liandong: the operators' command line. Builds federations from the official topology, runs
//! and stops hosts, registers and handles cases, runs drills.
pub mod cert_cmd;
pub mod cli;
pub mod client;
pub mod commands;
pub mod desk_cmd;
pub mod drill_run;
pub mod examples;
pub mod layout;
pub mod logs_cmd;
pub mod notice_cmd;
pub mod people;
pub mod process;
pub mod progress;
pub mod replica_cmd;
pub mod report_cmd;
pub mod rolling;
pub mod sample;
pub mod session;
pub mod session_cmd;
pub mod site_cmd;
pub mod snapshot_cmd;
pub mod topology;
pub mod verify;
pub mod view;
