//! Constructors for the two backends. The caller (CLI `main`, the engine's backend choice) picks
//! one at the edge and passes it down. The wgpu one exists with the `wgpu` feature (the CPU
//! engine module is built without it).

use burn::tensor::Device;

/// burn's pure-Rust CPU backend (flex).
pub fn cpu() -> Device {
    Device::flex()
}

/// A wgpu device and a description of its adapter (name, graphics API, device type).
#[cfg(feature = "wgpu")]
#[derive(Debug, Clone)]
pub struct GpuDevice {
    /// The burn device.
    pub device: Device,
    /// e.g. `SwiftShader Device (Subzero) via BrowserWebGpu (Cpu)`.
    pub adapter: String,
}

/// The wgpu backend on the default adapter (native: Vulkan, Metal or DX12; in a browser:
/// WebGPU). Fails with the runtime's reason when no adapter is available.
#[cfg(feature = "wgpu")]
pub async fn wgpu() -> Result<GpuDevice, String> {
    let (device, setup) = Device::wgpu_options().init_with_setup_async().await.map_err(|e| format!("{e}"))?;
    let info = setup.adapter.get_info();
    let name = if info.name.is_empty() { "unnamed adapter".to_string() } else { info.name };
    Ok(GpuDevice { device, adapter: format!("{name} via {:?} ({:?})", info.backend, info.device_type) })
}
