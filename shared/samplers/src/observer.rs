use std::ops::ControlFlow;

use crate::{Error, Latent, Result, Schedule};

/// What a sampler reports after each step.
#[derive(Debug, Clone, Copy)]
pub struct StepEvent<'a> {
    /// 0-based index of the step just finished.
    pub index: usize,
    pub total: usize,
    /// The timestep the model was fed at this step.
    pub timestep: f64,
    /// Noise level of the state the model saw (rectified-flow `s`/`σ`, in `[0, 1]`).
    pub sigma: f64,
    /// The model's clean estimate `x̂₀ = x − σ·v` at this step: what previews decode.
    pub denoised: &'a Latent,
    /// The state after this step's update (the final sample after the last step).
    pub latent: &'a Latent,
}

/// Per-step hook for progress, previews and cancellation.
///
/// Returning [`ControlFlow::Break`] stops sampling; the sampler then returns
/// [`Error::Cancelled`], even after the last step, so a cancelled request never yields a result.
pub trait StepObserver {
    fn on_step(&mut self, event: &StepEvent<'_>) -> ControlFlow<()>;
}

impl<F: FnMut(&StepEvent<'_>) -> ControlFlow<()>> StepObserver for F {
    fn on_step(&mut self, event: &StepEvent<'_>) -> ControlFlow<()> {
        self(event)
    }
}

/// Ignores every step.
impl StepObserver for () {
    fn on_step(&mut self, _: &StepEvent<'_>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// Reports step `index` of `schedule`, its clean estimate and the updated state; a break becomes
/// [`Error::Cancelled`].
pub(crate) fn notify(
    observer: &mut dyn StepObserver,
    schedule: &Schedule,
    index: usize,
    denoised: &Latent,
    latent: &Latent,
) -> Result<()> {
    let event = StepEvent {
        index,
        total: schedule.steps(),
        timestep: schedule.timesteps()[index],
        sigma: schedule.sigmas()[index],
        denoised,
        latent,
    };
    match observer.on_step(&event) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Error::Cancelled {
            completed: index + 1,
            total: event.total,
        }),
    }
}
