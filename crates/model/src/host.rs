//! Reading tensors back to the host: the one helper every read-back goes through, and the count
//! of them. On WebGPU a read-back (`mapAsync`) costs milliseconds, not microseconds, so how many
//! a forward pass makes is what the benchmark prints per forward and per decoded token.

use std::cell::Cell;

use burn::prelude::*;

use crate::model::ModelError;

thread_local! {
    // Per thread: the engine is one thread, and parallel tests count their own.
    static READ_BACKS: Cell<u64> = const { Cell::new(0) };
}

/// Read-backs made by this thread so far.
pub fn read_backs() -> u64 {
    READ_BACKS.with(Cell::get)
}

/// The values of `t`, row-major, read back to the host (async: on wasm that is the only way).
pub(crate) async fn to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, ModelError> {
    READ_BACKS.with(|n| n.set(n.get() + 1));
    t.into_data_async()
        .await
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))
}

/// `values` unchanged when every one is finite, else [`ModelError::NonFinite`] at `place`.
pub(crate) fn finite(values: Vec<f32>, place: impl FnOnce() -> String) -> Result<Vec<f32>, ModelError> {
    if values.iter().all(|v| v.is_finite()) { Ok(values) } else { Err(ModelError::NonFinite { place: place() }) }
}
