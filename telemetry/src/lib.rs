//! Sluice's telemetry, outside the fast path: the Prometheus exposition that the control
//! thread fills on its period (`prom`) and the endpoint that serves it (`http`), and the
//! exporters' side threads (`otlp`, `ipfix`).

pub mod http;
pub mod ipfix;
pub mod otlp;
pub mod prom;

pub use http::Endpoint;
pub use prom::{Exporter, Labels};

/// Joins an exporter's thread if it finishes by `deadline`; false if it is still running
/// then (it is left to end on its own).
pub(crate) fn join_by(t: std::thread::JoinHandle<()>, deadline: std::time::Instant) -> bool {
    while !t.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if !t.is_finished() {
        return false;
    }
    // A panic there was logged when it happened; it has finished either way.
    let _ = t.join();
    true
}
