"""Interoperability with other libraries' checkpoints: `from_hf` loads a local Hugging Face
GPT-2, BERT, Llama, Gemma-2 or OLMo-2 checkpoint as the equivalent resnorm model."""

from resnorm.interop.hf import SUPPORTED, from_hf

__all__ = ["SUPPORTED", "from_hf"]
