//! `.pth` to safetensors conversion.
