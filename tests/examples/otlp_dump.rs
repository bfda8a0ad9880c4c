//! An OTLP trace receiver that prints every span it is sent as one JSON line on stdout, for
//! timing runs on hosts without a collector (`TRACE=1 tools/gpu/services_check.sh`): service,
//! name, trace, span and parent ids, start and end in Unix nanoseconds, and the span's scalar
//! attributes. Its endpoint is the first line, on stderr. Runs until killed.

use std::io::Write;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use serde_json::{Map, json};
use turbine_cluster_tests::otlp::{Receiver, hex};

#[tokio::main]
async fn main() {
    let mut receiver = Receiver::start().await;
    eprintln!("{}", receiver.endpoint());
    let mut printed = 0;
    loop {
        receiver
            .collect_until(Duration::from_secs(24 * 3600), |spans| {
                spans.len() > printed
            })
            .await;
        let mut out = std::io::stdout().lock();
        for s in &receiver.spans[printed..] {
            let line = json!({
                "service": s.service_name,
                "name": s.span.name,
                "trace": hex(&s.span.trace_id),
                "span": hex(&s.span.span_id),
                "parent": hex(&s.span.parent_span_id),
                "start_ns": s.span.start_time_unix_nano,
                "end_ns": s.span.end_time_unix_nano,
                "attrs": attributes(&s.span.attributes),
            });
            writeln!(out, "{line}").expect("stdout");
        }
        out.flush().expect("stdout");
        printed = receiver.spans.len();
    }
}

fn attributes(attributes: &[KeyValue]) -> Map<String, serde_json::Value> {
    attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                Value::IntValue(i) => json!(i),
                Value::StringValue(s) => json!(s),
                Value::BoolValue(b) => json!(b),
                Value::DoubleValue(d) => json!(d),
                Value::ArrayValue(_)
                | Value::KvlistValue(_)
                | Value::BytesValue(_)
                | Value::StringValueStrindex(_) => return None,
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}
