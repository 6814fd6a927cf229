//! Backend selection at run time: burn 0.22 picks the backend through its `Device`, and each
//! backend exists only when its cargo feature is compiled in.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{CoreError, Result};

/// The burn backends hd-painter can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// burn-flex, the pure-Rust CPU backend (always compiled in; the default).
    #[default]
    Flex,
    /// burn-ndarray, burn's deprecated CPU backend (feature `ndarray`; for cross-checks).
    Ndarray,
    /// wgpu: Vulkan, Metal or DirectX GPUs (feature `wgpu`).
    Wgpu,
    /// CUDA GPUs (feature `cuda`).
    Cuda,
}

impl BackendKind {
    /// The backends this build includes.
    pub fn compiled() -> Vec<BackendKind> {
        [Self::Flex, Self::Ndarray, Self::Wgpu, Self::Cuda]
            .into_iter()
            .filter(|k| k.is_compiled())
            .collect()
    }

    /// Whether this build includes the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Self::Flex => true,
            Self::Ndarray => cfg!(feature = "ndarray"),
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The default device of the backend, or [`CoreError::BackendUnavailable`] when the build
    /// lacks it (or, for CUDA, when no CUDA device is present).
    pub fn device(self) -> Result<Device> {
        let missing = |feature: &str| CoreError::BackendUnavailable {
            name: self.to_string(),
            reason: format!("built without the `{feature}` cargo feature"),
        };
        match self {
            Self::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // kept only as a cross-check of flex
            Self::Ndarray => Ok(Device::ndarray()),
            #[cfg(not(feature = "ndarray"))]
            Self::Ndarray => Err(missing("ndarray")),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(not(feature = "wgpu"))]
            Self::Wgpu => Err(missing("wgpu")),
            #[cfg(feature = "cuda")]
            Self::Cuda => {
                // cudarc panics when the driver library is absent, so look before creating.
                let found = Device::enumerate(burn::tensor::DeviceType::Cuda);
                found
                    .into_iter()
                    .next()
                    .ok_or_else(|| CoreError::BackendUnavailable {
                        name: self.to_string(),
                        reason: "no CUDA device found".into(),
                    })
            }
            #[cfg(not(feature = "cuda"))]
            Self::Cuda => Err(missing("cuda")),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        })
    }
}

impl FromStr for BackendKind {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(Self::Flex),
            "ndarray" => Ok(Self::Ndarray),
            "wgpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda),
            _ => Err(CoreError::BackendUnavailable {
                name: s.to_string(),
                reason: "unknown backend; expected flex, ndarray, wgpu or cuda".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_always_there_and_names_round_trip() {
        assert!(BackendKind::compiled().contains(&BackendKind::Flex));
        assert!(BackendKind::Flex.device().is_ok());
        for kind in [
            BackendKind::Flex,
            BackendKind::Ndarray,
            BackendKind::Wgpu,
            BackendKind::Cuda,
        ] {
            assert_eq!(kind.to_string().parse::<BackendKind>().unwrap(), kind);
            if !kind.is_compiled() {
                assert!(matches!(
                    kind.device(),
                    Err(CoreError::BackendUnavailable { .. })
                ));
            }
        }
        assert!("tpu".parse::<BackendKind>().is_err());
    }
}
