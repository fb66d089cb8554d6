//! Logs (text in dev, JSON in production), traces (OpenTelemetry, exported over OTLP/HTTP when configured) and the
//! Prometheus recorder.
//!
//! Every request runs in one `request` span (see `http::request_span`) that honours an incoming W3C `traceparent`
//! and carries `trace_id`, `span_id`, `request_id` and, once known, `user_id`: each log line written inside it has
//! them as top-level JSON keys. Outgoing WeChat calls send `traceparent` (`inject_traceparent`).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Keeps the span exporter alive; `shutdown` flushes the spans not yet sent. Call it after the async runtime has
/// stopped: the exporter's thread makes blocking HTTP calls.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("wxshop: flushing spans failed: {error}");
        }
    }
}

/// Installs the global tracing subscriber: the log layer, filtered by `log.filter` (`RUST_LOG` overrides it), and
/// the OpenTelemetry layer. With `otel_endpoint` set, spans at INFO and above are exported whatever the log filter
/// says; without it, the layer follows the log filter and only gives spans their ids (so log lines can be matched
/// with an upstream trace), sampling and exporting nothing. With neither wanting a span it is not even created.
pub fn init_tracing(config: &Config) -> anyhow::Result<Telemetry> {
    let provider = tracer_provider(config)?;
    let tracer = provider.tracer("wxshop");
    let log_filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    let otel_filter = if config.otel_endpoint.is_some() { EnvFilter::new("info") } else { log_filter() };
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(otel_filter);
    let registry = tracing_subscriber::registry().with(otel);
    let result = match config.log_format() {
        LogFormat::Json => registry
            .with(
                json_subscriber::layer()
                    .with_current_span(false)
                    .with_span_list(false)
                    .flatten_event(true)
                    .flatten_span_list_on_top_level(true)
                    .with_filter(log_filter()),
            )
            .try_init(),
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer().with_filter(log_filter())).try_init(),
    };
    // Already installed (several apps in one test process): keep the first.
    let _ = result;
    Ok(Telemetry { provider })
}

fn tracer_provider(config: &Config) -> anyhow::Result<SdkTracerProvider> {
    let resource = Resource::builder()
        .with_service_name("wxshop")
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(url) = config.otel_traces_url() else {
        return Ok(builder.with_sampler(Sampler::AlwaysOff).build());
    };
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| anyhow::anyhow!("OpenTelemetry exporter for {url}: {e}"))?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.otel_sample_ratio)));
    Ok(builder.with_batch_exporter(exporter).with_sampler(sampler).build())
}

/// Makes `span` a child of the caller's trace when the request carries a valid `traceparent`, then records the
/// span's own `trace_id` and `span_id` as fields (declared `Empty` by the caller) for the log lines inside it.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if span.is_disabled() {
        return; // filtered out (e.g. `log.filter = "error"`): no span, nothing to continue
    }
    let parent = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let context = span.context();
    let ids = context.span().span_context().clone();
    if ids.is_valid() {
        span.record("trace_id", tracing::field::display(ids.trace_id()));
        span.record("span_id", tracing::field::display(ids.span_id()));
    }
}

/// Adds `traceparent` (and `tracestate`) for `span` to an outgoing request's headers.
pub fn inject_traceparent(span: &tracing::Span, headers: &mut reqwest::header::HeaderMap) {
    let context = span.context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers));
    }
}

/// The process-wide Prometheus recorder. The `metrics` facade is global by design, so the recorder is installed
/// once per process and every `App` in it (tests start several) shares the handle.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                )
                .expect("static bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Histogram samples pile up in the recorder until they are folded into the buckets; without this, a
            // process nobody scrapes grows by every request's latency sample.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            });
            if let Err(error) = spawned {
                tracing::warn!(%error, "cannot start the metrics upkeep thread; histograms are folded at each scrape");
            }
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}
