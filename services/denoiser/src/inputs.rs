//! The request half of `Denoise`: a `DenoiseSetup`, then the context tensors it needs, each
//! checked as it streams in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic::Streaming;
use turbine_pipeline::GenerateRequest;
use turbine_proto::v1::{DenoiseInput, TensorChunk, denoise_input};
use turbine_rpc::params::validate;
use turbine_rpc::tensor::TensorAssembler;
use turbine_rpc::{Error, Result};
use turbine_samplers::DrawnAhead;
use turbine_tensor::HostTensor;

const CONTEXT: &str = "context";
const NEGATIVE_CONTEXT: &str = "negative_context";

/// A call's validated inputs.
pub(crate) struct Inputs {
    pub request: GenerateRequest,
    pub previews: bool,
    /// The request's noise, drawn from the setup on, where the caller could shape it.
    pub noise: Option<DrawnAhead>,
    pub context: HostTensor,
    /// Present exactly when the sampler uses classifier-free guidance.
    pub negative_context: Option<HostTensor>,
}

async fn next(input: &mut Streaming<DenoiseInput>) -> Result<Option<denoise_input::Kind>> {
    match input.message().await.map_err(Error::RequestStream)? {
        Some(DenoiseInput { kind: Some(kind) }) => Ok(Some(kind)),
        Some(DenoiseInput { kind: None }) => Err(Error::invalid("kind", "empty DenoiseInput")),
        None => Ok(None),
    }
}

/// Reads up to the last chunk of the last context the setup asks for; anything after is left in
/// the stream. `noise` starts the request's noise once the setup is read, while the contexts
/// stream in.
pub(crate) async fn read_inputs(
    input: &mut Streaming<DenoiseInput>,
    noise: impl FnOnce(&GenerateRequest) -> Option<DrawnAhead>,
) -> Result<Inputs> {
    let setup = match next(input).await? {
        Some(denoise_input::Kind::Setup(setup)) => setup,
        Some(denoise_input::Kind::Context(_)) => {
            return Err(Error::invalid(
                "setup",
                "the first message must be a DenoiseSetup",
            ));
        }
        None => {
            return Err(Error::invalid(
                "setup",
                "the stream ended before a DenoiseSetup",
            ));
        }
    };
    let params = setup
        .params
        .ok_or_else(|| Error::invalid("params", "required"))?;
    let valid = validate(&params, setup.seed)?;
    let guided = valid.request.uses_negative_prompt();
    let noise = noise(&valid.request);

    let mut contexts = Contexts::new(guided);
    while !contexts.complete() {
        match next(input).await? {
            Some(denoise_input::Kind::Context(chunk)) => contexts.push(chunk)?,
            Some(denoise_input::Kind::Setup(_)) => {
                return Err(Error::invalid("setup", "sent twice"));
            }
            None => return Err(contexts.ended_early()),
        }
    }
    let (context, negative_context) = contexts.into_tensors()?;
    Ok(Inputs {
        request: valid.request,
        previews: valid.previews,
        noise,
        context,
        negative_context,
    })
}

/// The context tensors of one call as they arrive; each tensor's chunks are consecutive.
struct Contexts {
    guided: bool,
    context: Option<HostTensor>,
    negative: Option<HostTensor>,
    current: Option<TensorAssembler>,
}

impl Contexts {
    fn new(guided: bool) -> Self {
        Self {
            guided,
            context: None,
            negative: None,
            current: None,
        }
    }

    fn complete(&self) -> bool {
        self.context.is_some() && (self.negative.is_some() || !self.guided)
    }

    fn push(&mut self, chunk: TensorChunk) -> Result<()> {
        let field = match chunk.name.as_str() {
            CONTEXT => CONTEXT,
            NEGATIVE_CONTEXT if self.guided => NEGATIVE_CONTEXT,
            NEGATIVE_CONTEXT => {
                return Err(Error::invalid(
                    NEGATIVE_CONTEXT,
                    "not used: this sampler runs without classifier-free guidance",
                ));
            }
            other => {
                return Err(Error::invalid(
                    CONTEXT,
                    format!(
                        "unexpected tensor {other:?} (expected {CONTEXT:?} or {NEGATIVE_CONTEXT:?})"
                    ),
                ));
            }
        };
        let slot = if field == CONTEXT {
            &mut self.context
        } else {
            &mut self.negative
        };
        if slot.is_some() {
            return Err(Error::invalid(field, "sent twice"));
        }
        // A chunk of another tensor before this one finished fails the assembler's name check.
        let assembler = self
            .current
            .get_or_insert_with(|| TensorAssembler::named(field));
        if let Some(tensor) = assembler.push(chunk)? {
            *slot = Some(tensor.to_host(field)?);
            self.current = None;
        }
        Ok(())
    }

    fn ended_early(&self) -> Error {
        if let Some(Err(e)) = self.current.as_ref().map(TensorAssembler::finish) {
            return e;
        }
        let missing = if self.context.is_none() {
            CONTEXT
        } else {
            NEGATIVE_CONTEXT
        };
        Error::invalid(missing, "the stream ended before this tensor")
    }

    fn into_tensors(self) -> Result<(HostTensor, Option<HostTensor>)> {
        let context = self
            .context
            .ok_or_else(|| Error::invalid(CONTEXT, "missing"))?;
        Ok((context, self.negative))
    }
}

/// Drains the rest of the request stream: a client that resets it (cancels, disconnects) sets
/// `reset`, which stops sampling at the next step. A normal end of stream is no signal.
pub(crate) async fn watch_for_reset(mut input: Streaming<DenoiseInput>, reset: Arc<AtomicBool>) {
    loop {
        match input.message().await {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(status) => {
                tracing::debug!(%status, "request stream reset");
                reset.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}
