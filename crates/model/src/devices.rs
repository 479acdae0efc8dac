//! Constructors for the two backends. The caller (CLI `main`, the app's backend module) picks
//! one at the edge and passes it down.

use burn::tensor::Device;

/// burn's pure-Rust CPU backend (flex).
pub fn cpu() -> Device {
    Device::flex()
}

/// The wgpu backend on the default adapter (native: Vulkan, Metal or DX12; in a browser:
/// WebGPU). Fails with the runtime's reason when no adapter is available.
pub async fn wgpu() -> Result<Device, String> {
    Device::wgpu_options().init_async().await.map_err(|e| format!("{e}"))
}
