//! Command-line and environment configuration, flattened into every service's arguments.

use std::net::SocketAddr;

/// Telemetry settings shared by every Turbine service (`#[command(flatten)]`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TelemetryConfig {
    /// OTLP gRPC collector that receives spans, e.g. `http://otel-collector:4317`. Spans are not
    /// exported when unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// Milliseconds the batch span exporter waits before sending a batch [default: 5000].
    #[arg(long, env = "OTEL_BSP_SCHEDULE_DELAY", value_name = "MS")]
    pub otlp_schedule_delay_ms: Option<u64>,

    /// `service.name` of exported spans [default: the executable's file name].
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,

    /// Format of the log lines written to stderr; `RUST_LOG` sets which are written (default `info`).
    #[arg(long, env = "TURBINE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address serving Prometheus metrics at `/metrics`, e.g. `0.0.0.0:9090`. No endpoint when unset.
    #[arg(long, env = "TURBINE_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

impl TelemetryConfig {
    /// The OTLP collector, if any. An empty `OTEL_EXPORTER_OTLP_ENDPOINT` counts as unset, as the
    /// OpenTelemetry specification has it for every empty variable (a compose file passes the
    /// variable through empty when the shell leaves it unset).
    pub fn otlp_endpoint(&self) -> Option<&str> {
        self.otlp_endpoint
            .as_deref()
            .filter(|e| !e.trim().is_empty())
    }

    /// `service.name`, if given: empty counts as unset, like the endpoint.
    pub fn service_name(&self) -> Option<&str> {
        self.service_name
            .as_deref()
            .filter(|s| !s.trim().is_empty())
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser};

    use super::*;

    #[derive(Parser)]
    struct ServiceArgs {
        #[command(flatten)]
        telemetry: TelemetryConfig,
    }

    #[test]
    fn flattens_into_service_args() {
        ServiceArgs::command().debug_assert();
        let args = ServiceArgs::try_parse_from([
            "turbine-denoiser",
            "--otlp-endpoint",
            "http://collector:4317",
            "--otlp-schedule-delay-ms",
            "100",
            "--service-name",
            "denoiser",
            "--log-format",
            "json",
            "--metrics-addr",
            "0.0.0.0:9090",
        ])
        .unwrap();
        let config = args.telemetry;
        assert_eq!(
            config.otlp_endpoint.as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(config.otlp_schedule_delay_ms, Some(100));
        assert_eq!(config.service_name.as_deref(), Some("denoiser"));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.metrics_addr,
            Some(SocketAddr::from(([0, 0, 0, 0], 9090)))
        );
    }

    #[test]
    fn empty_endpoint_and_service_name_are_unset() {
        let args = ServiceArgs::try_parse_from([
            "turbine-denoiser",
            "--otlp-endpoint",
            "",
            "--service-name",
            " ",
        ])
        .unwrap();
        assert_eq!(args.telemetry.otlp_endpoint(), None);
        assert_eq!(args.telemetry.service_name(), None);
        let args =
            ServiceArgs::try_parse_from(["turbine-denoiser", "--otlp-endpoint", "http://c:4317"])
                .unwrap();
        assert_eq!(args.telemetry.otlp_endpoint(), Some("http://c:4317"));
    }
}
