"""Export a resnorm model: a Hugging Face folder where an architecture computes the same network,
otherwise resnorm's own folder.

``to_hf(model, cfg, out_dir)`` writes, without needing ``transformers``:

* for a model `hf_export.family_for` maps (GPT-2, GPT-1, Llama, BERT, Gemma-2, OLMo-2):
  ``config.json`` and ``model.safetensors`` under the ``transformers`` names, loadable by its Auto
  class with no code of ours (and back into resnorm by ``from_hf``);
* otherwise: ``model.safetensors`` (resnorm's state-dict names, a tied head written once) and
  ``resnorm.json`` (the `ModelConfig`), which ``resnorm.load_model`` reads.

Both write a ``README.txt`` saying how to load the folder, and for the second why Hugging Face
cannot. Nothing is approximated: a single field whose value the architecture does not compute
sends the model to the second form, and the reason names that field.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from resnorm.errors import ConfigError
from resnorm.interop.hf_export import Family, family_for, hf_config, hf_state
from resnorm.load import save_model
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import Transformer

WEIGHTS = "model.safetensors"
RESNORM_CONFIG = "resnorm.json"
README = "README.txt"


@dataclass(frozen=True)
class Export:
    """What `to_hf` wrote.

    Attributes:
        folder: the folder.
        architecture: the Hugging Face class (``LlamaForCausalLM``, ...), or None for a resnorm
            folder.
        auto_class: the ``transformers`` Auto class that loads it, or None.
        reason: why Hugging Face cannot load it (``field: message``), or None.
    """

    folder: Path
    architecture: str | None
    auto_class: str | None
    reason: str | None

    @property
    def is_hf(self) -> bool:
        return self.architecture is not None

    def summary(self) -> str:
        """One line for the terminal."""
        if self.is_hf:
            return (
                f"wrote {self.folder} as {self.architecture}: "
                f"transformers.{self.auto_class}.from_pretrained({str(self.folder)!r}) loads it"
            )
        return (
            f"wrote {self.folder} as a resnorm folder ({WEIGHTS} + {RESNORM_CONFIG}, loadable by "
            f"resnorm.load_model); Hugging Face cannot load it: {self.reason}"
        )


def to_hf(
    model: Transformer, cfg: ModelConfig, out_dir: str | Path, *, strict: bool = False
) -> Export:
    """Write ``model`` to ``out_dir`` as a Hugging Face folder, or as a resnorm folder when no
    Hugging Face architecture computes it.

    Args:
        model: a resnorm ``Transformer`` built from ``cfg``.
        cfg: its config.
        out_dir: a new or empty folder (created).
        strict: raise instead of writing a resnorm folder when Hugging Face cannot load it.

    Returns:
        `Export`: which form was written and, for a resnorm folder, why.

    Raises:
        ConfigError: ``out_dir`` exists and is not an empty folder; with ``strict``, the field
            whose value no supported architecture computes.
    """
    folder = Path(out_dir)
    try:
        family = family_for(cfg)
    except ConfigError as err:
        if strict:
            raise
        with _fresh(folder):
            write_resnorm(model, cfg, folder, str(err))
        return Export(folder, None, None, str(err))
    with _fresh(folder):
        write_hf(family, model.state_dict(), cfg, folder)
    return Export(folder, family.architecture, family.auto_class, None)


@contextmanager
def _fresh(folder: Path) -> Iterator[None]:
    """`prepare` ``folder``, and if the writes inside fail (a full disk), leave it as it was:
    removed when this made it, emptied when it was an empty folder."""
    existed = folder.exists()
    prepare(folder)
    try:
        yield
    except BaseException:
        if existed:
            for child in folder.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        else:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def check_out_dir(folder: Path, field: str = "out_dir") -> None:
    """Refuse a ``folder`` that holds files (an old export's would be mixed in)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(
            field, f"{str(folder)!r} exists and is not an empty folder; choose a new one"
        )


def prepare(folder: Path) -> None:
    """Create ``folder``, new or empty."""
    check_out_dir(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError("out_dir", f"cannot create {str(folder)!r}: {err}") from None


def write_hf(
    family: Family, state: dict[str, torch.Tensor], cfg: ModelConfig, folder: Path
) -> None:
    tensors = hf_state(family, state, cfg)
    dtype = next(iter(tensors.values())).dtype
    config = hf_config(family, cfg, dtype)
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / README).write_text(hf_readme(family, cfg, folder), encoding="utf-8")


def write_resnorm(model: Transformer, cfg: ModelConfig, folder: Path, reason: str) -> None:
    save_model(model, folder)
    (folder / README).write_text(resnorm_readme(cfg, folder, reason), encoding="utf-8")


def hf_readme(family: Family, cfg: ModelConfig, folder: Path) -> str:
    lines = [
        f"A resnorm {cfg.topology} {cfg.kind} exported as Hugging Face {family.architecture}.",
        "",
        "Load it with transformers (no resnorm code needed):",
        "",
        f"    from transformers import {family.auto_class}",
        f"    model = {family.auto_class}.from_pretrained({str(folder)!r})",
        "",
        f"or back into resnorm: resnorm.interop.from_hf({str(folder)!r}).",
        "No tokenizer is included: the token ids are those of the resnorm run.",
    ]
    no_bias = [f for f in ("attn_bias", "mlp_bias", "norm_bias") if not getattr(cfg, f)]
    if family.name in ("gpt2", "openai-gpt", "bert") and no_bias:
        lines += ["", f"The model has no biases ({', '.join(no_bias)} false): they are zeros here."]
    if family.name == "bert":
        lines += [
            "",
            "BertModel has no LM head. resnorm's logits are the last hidden state times the word",
            "embeddings: model(ids).last_hidden_state @ model.embeddings.word_embeddings.weight.T.",
            "The pooler is an identity written by the export (resnorm has none), so",
            "pooler_output = tanh(last_hidden_state[:, 0]); segment embeddings are zero.",
        ]
    if family.name == "gemma2" and cfg.attn_softcap is not None:
        lines += [
            "",
            "Attention scores are soft-capped: load with attn_implementation='eager' (SDPA",
            "cannot soft-cap).",
        ]
    return "\n".join(lines) + "\n"


def resnorm_readme(cfg: ModelConfig, folder: Path, reason: str) -> str:
    return "\n".join(
        [
            f"A resnorm {cfg.topology} {cfg.kind}: {WEIGHTS} (resnorm's parameter names) and",
            f"{RESNORM_CONFIG} (its resnorm.nn.config.ModelConfig).",
            "",
            "Hugging Face transformers cannot load this folder, because no architecture it has",
            "computes this model:",
            f"    {reason}",
            "",
            "Load it with resnorm:",
            "",
            "    import resnorm",
            f"    model, cfg = resnorm.load_model({str(folder)!r})",
            "",
        ]
    )
