"""Interoperability with other libraries' checkpoints: `from_hf` loads a local Hugging Face
GPT-2, GPT-1, BERT, Llama, Gemma-2 or OLMo-2 checkpoint as the equivalent resnorm model; `to_hf`
writes a resnorm model as one of those (or, with no equivalent, as a resnorm folder saying why)."""

from resnorm.interop.export import Export, to_hf
from resnorm.interop.hf import SUPPORTED, from_hf

__all__ = ["SUPPORTED", "Export", "from_hf", "to_hf"]
