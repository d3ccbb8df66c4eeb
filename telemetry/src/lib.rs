//! Sluice's telemetry, outside the fast path: the Prometheus exposition that the control
//! thread fills on its period (`prom`) and the endpoint that serves it (`http`).

pub mod http;
pub mod ipfix;
pub mod otlp;
pub mod prom;

pub use http::Endpoint;
pub use prom::{Exporter, Labels};
