//! Every invalid `GenerationParams` field (and a too-long idempotency key) is refused at
//! SubmitJob with INVALID_ARGUMENT whose message starts with the field's name; no job is created.
//!
//! proto3 cannot tell a zero from an unset field, and params.proto gives `width`, `height`,
//! `frames`, `rcm.steps` and `flow.steps` defaults for unset: a 0 there asks for the default and
//! is accepted. The test holds the service to that contract too (the jobs wait behind a long one
//! and are cancelled before they run).

use tonic::Code;
use turbine_cluster_tests::client::{self, next_event, submit};
use turbine_cluster_tests::{Cluster, ClusterConfig};
use turbine_proto::v1::generation_params::Sampler;
use turbine_proto::v1::{
    Attention, AttentionMode, CancelJobRequest, FlowSampler, FlowSolver, GenerationParams,
    GetJobRequest, JobState, ListJobsRequest, RcmSampler, SubmitJobRequest, job_event,
};

use crate::{flow, params};

fn valid() -> GenerationParams {
    params("a valid prompt", (64, 48, 9), 1)
}

fn with_rcm(rcm: RcmSampler) -> GenerationParams {
    GenerationParams {
        sampler: Some(Sampler::Rcm(rcm)),
        ..valid()
    }
}

fn with_flow(flow: FlowSampler) -> GenerationParams {
    GenerationParams {
        sampler: Some(Sampler::Flow(flow)),
        ..valid()
    }
}

fn with_sla(attention: Attention) -> GenerationParams {
    GenerationParams {
        attention: Some(Attention {
            mode: AttentionMode::Sla as i32,
            ..attention
        }),
        ..valid()
    }
}

/// `(what, request, the field its message must start with)`.
fn invalid_cases() -> Vec<(&'static str, SubmitJobRequest, &'static str)> {
    let p = |params: GenerationParams| SubmitJobRequest {
        params: Some(params),
        idempotency_key: String::new(),
    };
    let rcm = |steps, sigma_max| {
        with_rcm(RcmSampler {
            steps,
            sigma_max,
            ode: false,
        })
    };
    let flow = |steps, shift, guidance| {
        with_flow(FlowSampler {
            steps,
            shift,
            guidance,
            solver: FlowSolver::Euler as i32,
        })
    };
    let sla = |topk, block_q, block_k| {
        with_sla(Attention {
            topk,
            block_q,
            block_k,
            ..Attention::default()
        })
    };
    vec![
        (
            "no params",
            SubmitJobRequest {
                params: None,
                idempotency_key: String::new(),
            },
            "params",
        ),
        (
            "empty prompt",
            p(GenerationParams {
                prompt: String::new(),
                ..valid()
            }),
            "prompt",
        ),
        (
            "whitespace prompt",
            p(GenerationParams {
                prompt: " \n\t ".into(),
                ..valid()
            }),
            "prompt",
        ),
        (
            "prompt over 16 KiB",
            p(GenerationParams {
                prompt: "x".repeat(16 * 1024 + 1),
                ..valid()
            }),
            "prompt",
        ),
        (
            "negative prompt over 16 KiB",
            p(GenerationParams {
                negative_prompt: "x".repeat(16 * 1024 + 1),
                ..valid()
            }),
            "negative_prompt",
        ),
        (
            "width not a multiple of 16",
            p(GenerationParams {
                width: 72,
                ..valid()
            }),
            "width",
        ),
        (
            "height not a multiple of 16",
            p(GenerationParams {
                height: 50,
                ..valid()
            }),
            "height",
        ),
        (
            "width too big",
            p(GenerationParams {
                width: 8192,
                ..valid()
            }),
            "width",
        ),
        (
            "height too big",
            p(GenerationParams {
                height: 8192,
                ..valid()
            }),
            "height",
        ),
        (
            "beyond the H.264 encoder",
            p(GenerationParams {
                width: 4096,
                height: 4096,
                ..valid()
            }),
            "width",
        ),
        (
            "frames not 4k+1",
            p(GenerationParams {
                frames: 8,
                ..valid()
            }),
            "frames",
        ),
        (
            "frames 2",
            p(GenerationParams {
                frames: 2,
                ..valid()
            }),
            "frames",
        ),
        ("rcm 5 steps", p(rcm(5, None)), "rcm.steps"),
        ("rcm 1000 steps", p(rcm(1000, None)), "rcm.steps"),
        ("rcm sigma_max 0", p(rcm(4, Some(0.0))), "rcm.sigma_max"),
        ("rcm sigma_max < 0", p(rcm(4, Some(-80.0))), "rcm.sigma_max"),
        (
            "rcm sigma_max NaN",
            p(rcm(4, Some(f64::NAN))),
            "rcm.sigma_max",
        ),
        ("flow 1001 steps", p(flow(1001, None, None)), "flow.steps"),
        ("flow shift 0", p(flow(10, Some(0.0), None)), "flow.shift"),
        (
            "flow shift < 0",
            p(flow(10, Some(-1.0), None)),
            "flow.shift",
        ),
        (
            "flow guidance < 1",
            p(flow(10, None, Some(0.5))),
            "flow.guidance",
        ),
        (
            "flow guidance 0",
            p(flow(10, None, Some(0.0))),
            "flow.guidance",
        ),
        (
            "flow solver unknown",
            p(with_flow(FlowSampler {
                steps: 10,
                solver: 42,
                ..FlowSampler::default()
            })),
            "flow.solver",
        ),
        (
            "attention topk 0",
            p(sla(Some(0.0), None, None)),
            "attention.topk",
        ),
        (
            "attention topk > 1",
            p(sla(Some(1.5), None, None)),
            "attention.topk",
        ),
        (
            "attention topk < 0",
            p(sla(Some(-0.1), None, None)),
            "attention.topk",
        ),
        (
            "attention topk NaN",
            p(sla(Some(f64::NAN), None, None)),
            "attention.topk",
        ),
        (
            "attention block_q 0",
            p(sla(None, Some(0), None)),
            "attention.block_q",
        ),
        (
            "attention block_k 0",
            p(sla(None, None, Some(0))),
            "attention.block_k",
        ),
        (
            "attention mode unknown",
            p(GenerationParams {
                attention: Some(Attention {
                    mode: 9,
                    ..Attention::default()
                }),
                ..valid()
            }),
            "attention.mode",
        ),
        (
            "fps 0",
            p(GenerationParams {
                fps: Some(0.0),
                ..valid()
            }),
            "fps",
        ),
        (
            "fps < 0",
            p(GenerationParams {
                fps: Some(-16.0),
                ..valid()
            }),
            "fps",
        ),
        (
            "fps above the maximum",
            p(GenerationParams {
                fps: Some(240.0),
                ..valid()
            }),
            "fps",
        ),
        (
            "fps NaN",
            p(GenerationParams {
                fps: Some(f64::NAN),
                ..valid()
            }),
            "fps",
        ),
        (
            "idempotency key of 129 characters",
            SubmitJobRequest {
                params: Some(valid()),
                idempotency_key: "k".repeat(129),
            },
            "idempotency_key",
        ),
    ]
}

/// Checks the parameters a job reports after the defaults were filled in.
type Resolved = fn(&GenerationParams) -> bool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_params_are_refused_naming_the_field() {
    let cluster = Cluster::start(ClusterConfig::default()).await;
    let mut client = cluster.client().await;

    let mut wrong = Vec::new();
    for (what, request, field) in invalid_cases() {
        match client.submit_job(request).await {
            Ok(response) => wrong.push(format!(
                "{what}: accepted as job {}",
                response.into_inner().job_id
            )),
            Err(status) => {
                let prefix = format!("{field}: ");
                if status.code() != Code::InvalidArgument || !status.message().starts_with(&prefix)
                {
                    wrong.push(format!(
                        "{what}: {:?} {:?} (expected INVALID_ARGUMENT starting with {prefix:?})",
                        status.code(),
                        status.message()
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} invalid requests were not refused as expected:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let jobs = client
        .list_jobs(ListJobsRequest::default())
        .await
        .expect("ListJobs")
        .into_inner()
        .jobs;
    assert!(jobs.is_empty(), "refused requests created jobs: {jobs:?}");

    // A long job holds the one job slot, so the zero-valued requests below stay queued.
    let blocker = GenerationParams {
        sampler: flow(FlowSolver::Euler, 1000, 1.0),
        ..params("a long job", (64, 48, 9), 2)
    };
    let blocker_id = submit(&mut client, &blocker).await;
    let mut events = client::watch(&mut client, &blocker_id).await;
    while !matches!(
        next_event(&mut events).await.and_then(|e| e.kind),
        Some(job_event::Kind::Progress(_))
    ) {}

    // Zero is "unset" in proto3: the documented defaults apply.
    let zero_cases: Vec<(&str, GenerationParams, Resolved)> = vec![
        (
            "width 0 -> 832",
            GenerationParams {
                width: 0,
                ..valid()
            },
            |p| p.width == 832,
        ),
        (
            "height 0 -> 480",
            GenerationParams {
                height: 0,
                ..valid()
            },
            |p| p.height == 480,
        ),
        (
            "frames 0 -> 81",
            GenerationParams {
                frames: 0,
                ..valid()
            },
            |p| p.frames == 81,
        ),
        (
            "rcm steps 0 -> 4",
            with_rcm(RcmSampler::default()),
            |p| matches!(&p.sampler, Some(Sampler::Rcm(r)) if r.steps == 4),
        ),
        (
            "flow steps 0 -> 50",
            GenerationParams {
                sampler: Some(Sampler::Flow(FlowSampler::default())),
                ..valid()
            },
            |p| matches!(&p.sampler, Some(Sampler::Flow(f)) if f.steps == 50),
        ),
    ];
    for (what, params, resolved) in zero_cases {
        let job_id = submit(&mut client, &params).await;
        let job = client
            .get_job(GetJobRequest {
                job_id: job_id.clone(),
            })
            .await
            .expect("GetJob")
            .into_inner();
        assert_eq!(job.state(), JobState::Queued, "{what}");
        let reported = job.params.as_ref().expect("Job.params");
        assert!(resolved(reported), "{what}: resolved to {reported:?}");
        let cancelled = client
            .cancel_job(CancelJobRequest { job_id })
            .await
            .expect("CancelJob")
            .into_inner();
        assert_eq!(cancelled.state(), JobState::Cancelled, "{what}");
    }
    client
        .cancel_job(CancelJobRequest { job_id: blocker_id })
        .await
        .expect("CancelJob");
}
