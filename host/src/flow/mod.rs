//! Flows: sorting messages by rules, and the pipeline that runs their Flowsteps.

mod fresh;
pub mod pipeline;
pub mod rules;

pub use pipeline::{FlowError, FlowRun, Pipeline, PipelineHandle, PipelineParts};
