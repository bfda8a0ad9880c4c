//! One job's spans from all four services arrive at a real OTLP gRPC receiver as one trace: the
//! submitter's `traceparent` is the root, each stage service's server span is the child of the
//! orchestrator's client span for that call, and the denoiser's phases are children of its own.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use turbine_cluster_tests::client::{self, done};
use turbine_cluster_tests::otlp::{self, Exported, Receiver};
use turbine_cluster_tests::{Cluster, ClusterConfig};
use turbine_proto::v1::{GenerationParams, SubmitJobRequest};

use crate::{params, rcm};

/// The caller's trace, as a W3C `traceparent` would carry it from an upstream service.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// `(service.name of the stage, gRPC method)` of each stage call of a job.
const STAGE_CALLS: [(&str, &str); 3] = [
    ("turbine-text-encoder", "turbine.v1.TextEncoder/Encode"),
    ("turbine-denoiser", "turbine.v1.Denoiser/Denoise"),
    ("turbine-vae", "turbine.v1.Vae/Decode"),
];
const ORCHESTRATOR: &str = "turbine-orchestrator";

fn in_trace(spans: &[Exported]) -> Vec<&Exported> {
    spans
        .iter()
        .filter(|s| otlp::hex(&s.span.trace_id) == TRACE_ID)
        .collect()
}

fn find<'a>(
    spans: &[&'a Exported],
    service: &str,
    name: &str,
    kind: SpanKind,
) -> Option<&'a Exported> {
    spans
        .iter()
        .copied()
        .find(|s| s.service_name == service && s.span.name == name && s.span.kind == kind as i32)
}

/// Every span a complete trace needs: the job span (it ends last in the orchestrator), and both
/// ends of each stage call.
fn complete(spans: &[Exported]) -> bool {
    let trace = in_trace(spans);
    let job = trace
        .iter()
        .any(|s| s.service_name == ORCHESTRATOR && s.span.name == "job");
    job && STAGE_CALLS.iter().all(|(service, method)| {
        find(&trace, service, method, SpanKind::Server).is_some()
            && find(&trace, ORCHESTRATOR, method, SpanKind::Client).is_some()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_is_one_trace_across_the_four_services() {
    let mut receiver = Receiver::start().await;
    let cluster = Cluster::start(ClusterConfig {
        otlp_endpoint: Some(receiver.endpoint()),
        ..ClusterConfig::default()
    })
    .await;
    let mut client = cluster.client().await;
    let request = GenerationParams {
        sampler: rcm(2),
        ..params("a trace through the cluster", (64, 48, 9), 9)
    };
    let mut submit = tonic::Request::new(SubmitJobRequest {
        params: Some(request),
        idempotency_key: String::new(),
    });
    submit.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01")
            .parse()
            .expect("ASCII header"),
    );
    let job_id = client
        .submit_job(submit)
        .await
        .expect("SubmitJob")
        .into_inner()
        .job_id;
    done(&client::watch_to_end(&mut client, &job_id).await);

    receiver
        .collect_until(Duration::from_secs(30), complete)
        .await;
    let trace = in_trace(&receiver.spans);
    let all = || otlp::describe(&receiver.spans);
    eprintln!(
        "the job's trace:\n{}",
        otlp::describe(&trace.iter().map(|s| (*s).clone()).collect::<Vec<_>>())
    );

    let services: BTreeSet<&str> = trace.iter().map(|s| s.service_name.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from([
            ORCHESTRATOR,
            "turbine-text-encoder",
            "turbine-denoiser",
            "turbine-vae"
        ]),
        "services in the trace:\n{}",
        all()
    );

    // The orchestrator continues the submitter's trace.
    let submit_span = find(
        &trace,
        ORCHESTRATOR,
        "turbine.v1.Orchestrator/SubmitJob",
        SpanKind::Server,
    )
    .unwrap_or_else(|| panic!("no SubmitJob server span in the trace:\n{}", all()));
    assert_eq!(
        otlp::hex(&submit_span.span.parent_span_id),
        CALLER_SPAN_ID,
        "SubmitJob's parent is the caller's span"
    );

    for (service, method) in STAGE_CALLS {
        let server = find(&trace, service, method, SpanKind::Server).expect("collected");
        let parent = trace
            .iter()
            .find(|s| s.span.span_id == server.span.parent_span_id)
            .unwrap_or_else(|| {
                panic!(
                    "the parent of {service}'s {method} server span is not in the trace:\n{}",
                    all()
                )
            });
        assert_eq!(
            (
                parent.service_name.as_str(),
                parent.span.name.as_str(),
                parent.span.kind
            ),
            (ORCHESTRATOR, method, SpanKind::Client as i32),
            "{service}'s server span hangs under the orchestrator's client span:\n{}",
            all()
        );
        // The job's stage calls all happened in this trace: none of them started another.
        let elsewhere = receiver
            .spans
            .iter()
            .filter(|s| s.span.name == method && otlp::hex(&s.span.trace_id) != TRACE_ID);
        assert_eq!(
            elsewhere.count(),
            0,
            "{method} spans outside the job's trace:\n{}",
            all()
        );
    }

    // The denoiser's call shows where its time goes: its phases hang under its server span.
    let denoise =
        find(&trace, STAGE_CALLS[1].0, STAGE_CALLS[1].1, SpanKind::Server).expect("collected");
    for phase in ["read_inputs", "prepare_context", "sample", "send_latents"] {
        let span = trace
            .iter()
            .find(|s| s.service_name == STAGE_CALLS[1].0 && s.span.name == phase)
            .unwrap_or_else(|| panic!("no {phase} span in the denoiser's call:\n{}", all()));
        assert_eq!(
            span.span.parent_span_id,
            denoise.span.span_id,
            "{phase} hangs under the Denoise server span:\n{}",
            all()
        );
    }

    // Every span of the trace hangs under another span of it, or under the caller's.
    let ids: HashSet<&[u8]> = trace.iter().map(|s| s.span.span_id.as_slice()).collect();
    for span in &trace {
        let parent = otlp::hex(&span.span.parent_span_id);
        assert!(
            parent == CALLER_SPAN_ID || ids.contains(span.span.parent_span_id.as_slice()),
            "{} span {} has a parent ({parent}) outside the trace:\n{}",
            span.service_name,
            span.span.name,
            all()
        );
    }
}
