"""Models: the embedded SmolLM2 (GGUF -> safetensors), local folders and cached hub ids, LoRA, tiny test
models, reward models (sequence classifiers), and the policy's weights as a rollout engine wants them."""

from r1kit.core.errors import ModelError
from r1kit.models.loading import build_tiny_model, ensure_embedded_model, load_model, load_tokenizer, resolve_model_path

__all__ = ["ModelError", "build_tiny_model", "ensure_embedded_model", "load_model", "load_tokenizer",
           "resolve_model_path"]
