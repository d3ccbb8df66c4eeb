//! The control plane's pure parts: configuration (TOML, validated, with errors that name
//! file, line and field) and the process's stderr logger.

pub mod config;
pub mod ctl;
pub mod hold;
pub mod logging;
pub mod mac;
pub mod neigh;
pub mod packet;
pub mod plane;
pub mod wire;

pub use config::{Config, ConfigError};
pub use mac::MacAddr;
