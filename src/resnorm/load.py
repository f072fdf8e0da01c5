"""`load_model`: a trained or exported model back in memory, ready for inference.

Four sources, tried in this order:

* an **exported folder**: ``model.safetensors`` + ``resnorm.json``. ``resnorm.json`` is the
  `ModelConfig` as a JSON object (``ModelConfig.to_dict()``; ``{"model": {...}}`` is accepted too,
  which is how a run stores it); ``model.safetensors`` holds the model's state-dict tensors by
  name, a tied head once (as ``embed.tok.weight``, no ``lm_head.weight``). `save_model` writes it.
* a **Hugging Face folder**: ``config.json`` + ``*.safetensors`` and no ``resnorm.json`` (what
  ``resnorm export --hf`` writes), read by `resnorm.interop.from_hf`;
* a **run folder** ``<lab>/runs/<run_id>``: the newest committed checkpoint in ``checkpoints/``
  (``step-*.json`` names the tensors file and its sha256; its ``config.model`` is the config);
* a **run id** (or a unique prefix of one) in the lab folder ``lab``.

The model is built on the ``meta`` device without its init scheme, then its tensors are taken
straight from the safetensors file (``load_state_dict(assign=True, strict=True)``): no random
init is computed and only one copy of the weights is held (a checkpoint's optimizer moments are
never read).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from resnorm.errors import ConfigError
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import Transformer

EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "resnorm.json"
HF_CONFIG = "config.json"  # a Hugging Face folder (``resnorm export --hf``): read by `from_hf`
MODEL_PREFIX = "model."  # a checkpoint's model tensors; ``optim.*`` and ``rng.*`` are skipped


def load_model(
    path_or_run_id: str | Path, lab: str | Path = "lab", device: str | torch.device = "cpu"
) -> tuple[Transformer, ModelConfig]:
    """The model (eval mode, every tensor loaded with ``strict=True``) and its config.

    Args:
        path_or_run_id: an exported folder (resnorm's or Hugging Face's), a run folder, or a
            run id (a unique prefix will do) in ``lab``.
        lab: the lab folder holding ``runs/<run_id>``.
        device: where the weights go.

    Raises:
        ConfigError: an unknown run (listing the runs there), a folder of neither kind, or
            tensors that do not match the config.
    """
    path = Path(path_or_run_id)
    if not (path / EXPORT_CONFIG).is_file() and (path / HF_CONFIG).is_file():
        from resnorm.interop.hf import from_hf  # interop imports this module

        model, cfg = from_hf(path)
        return model.to(device), cfg
    if (path / EXPORT_CONFIG).is_file():
        cfg = _export_config(path / EXPORT_CONFIG)
        tensors = _read_tensors(path / EXPORT_WEIGHTS, "")
    else:
        folder = path if (path / "checkpoints").is_dir() else _run_folder(str(path_or_run_id), lab)
        meta, tensors_path = _newest_checkpoint(folder / "checkpoints")
        cfg = ModelConfig.from_dict(meta.get("config", {}).get("model", {}), "config.model")
        tensors = _read_tensors(tensors_path, MODEL_PREFIX)
    return build_loaded(cfg, tensors, device), cfg


def run_config(path_or_run_id: str | Path, lab: str | Path = "lab") -> dict[str, Any] | None:
    """The whole run config (data, training) stored with a run's newest checkpoint, as a dict;
    None for an exported folder (resnorm's or Hugging Face's), which holds the model only.

    Raises:
        ConfigError: an unknown run, or a missing or corrupt checkpoint.
    """
    path = Path(path_or_run_id)
    if (path / EXPORT_CONFIG).is_file() or (path / HF_CONFIG).is_file():
        return None
    folder = path if (path / "checkpoints").is_dir() else _run_folder(str(path_or_run_id), lab)
    meta, _ = _newest_checkpoint(folder / "checkpoints")
    config = meta.get("config")
    return dict(config) if isinstance(config, Mapping) else None


def build_loaded(
    cfg: ModelConfig, tensors: Mapping[str, Tensor], device: str | torch.device = "cpu"
) -> Transformer:
    """The model of ``cfg`` holding ``tensors`` (a state dict, tied head once), in eval mode."""
    with torch.device("meta"):
        model = Transformer(cfg, init=False)  # shapes only: no memory, no init computed
    state = {k: v.to(device) for k, v in tensors.items()}
    if cfg.tie_embeddings and "lm_head.weight" not in state and "embed.tok.weight" in state:
        state["lm_head.weight"] = state["embed.tok.weight"]
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise ConfigError("weights", f"do not match the model config: {e}") from None
    if cfg.tie_embeddings:  # assign=True made two Parameters of the one tensor: tie them again
        model.lm_head.weight = model.embed.tok.weight
    if model.embed.rotary is not None:  # its tables are not in the state dict
        with torch.device(device):
            model.embed.rotary.rebuild(cfg.max_seq_len)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    assert not left, f"tensors left on the meta device after loading: {left}"
    return model.eval()


def save_model(model: Transformer, folder: str | Path) -> Path:
    """Write ``model`` as an exported folder (``model.safetensors`` + ``resnorm.json``)."""
    from resnorm.train.checkpoint import model_tensors

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model_tensors(model).items()}
    save_file(tensors, str(out / EXPORT_WEIGHTS))
    text = json.dumps(model.cfg.to_dict(), indent=1, sort_keys=True)
    (out / EXPORT_CONFIG).write_text(text + "\n", encoding="utf-8")
    return out


def _export_config(path: Path) -> ModelConfig:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError("path", f"{path} is not a readable JSON file ({e})") from None
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
        data = data["model"]
    if not isinstance(data, Mapping):
        raise ConfigError("path", f"{path}: expected a JSON object (the model config)")
    return ModelConfig.from_dict(data, "model")


def _run_folder(run_id: str, lab: str | Path) -> Path:
    """``<lab>/runs/<run_id>``, or that of the one run whose id starts with ``run_id``."""
    runs = Path(lab) / "runs"
    known = sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    if run_id in known:
        return runs / run_id
    matches = [name for name in known if name.startswith(run_id)] if run_id else []
    if len(matches) == 1:
        return runs / matches[0]
    listed = ", ".join(known) if known else "none"
    if len(matches) > 1:
        raise ConfigError("run", f"{run_id!r} is the start of several runs in {runs}: {listed}")
    raise ConfigError(
        "run",
        f"no run {run_id!r} in {runs} (nor a run or export folder of that name); "
        f"runs there: {listed}",
    )


def _newest_checkpoint(folder: Path) -> tuple[dict[str, Any], Path]:
    """The newest committed checkpoint's JSON and its tensors file, checked against its sha256."""
    committed = sorted(folder.glob("step-*.json")) if folder.is_dir() else []  # zero-padded steps
    if not committed:
        raise ConfigError("checkpoint", f"no checkpoint in {folder} (was the run started?)")
    path = committed[-1]
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        tensors_path, digest = folder / str(meta["tensors"]), str(meta["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError("checkpoint", f"{path} is truncated or corrupt ({e})") from None
    sha = hashlib.sha256()
    try:
        with tensors_path.open("rb") as f:  # streamed: the file is never held whole
            for chunk in iter(lambda: f.read(1 << 22), b""):
                sha.update(chunk)
    except OSError as e:
        raise ConfigError("checkpoint", f"{path}: cannot read its tensors ({e})") from None
    if sha.hexdigest() != digest:
        raise ConfigError("checkpoint", f"{tensors_path} is truncated or corrupt")
    return meta, tensors_path


def _read_tensors(path: Path, prefix: str) -> dict[str, Tensor]:
    """The tensors of ``path`` whose names start with ``prefix``, without it."""
    if not path.is_file():
        raise ConfigError("path", f"{path} does not exist")
    try:
        file = SafetensorsFile(path)
        return {k[len(prefix) :]: file.read(k) for k in file.names() if k.startswith(prefix)}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError("path", f"{path} is not a readable safetensors file ({e})") from None


class SafetensorsFile:
    """A safetensors file read tensor by tensor with plain reads into fresh tensors.

    Not ``safetensors.safe_open``: that maps the file, and the mapped pages count in the
    process's resident memory next to the copies made from them, so a load peaks near two
    copies of the weights. A plain read goes through the page cache, outside this process's
    RSS, straight into the tensor that the model keeps; the tensors are writable and owned.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self.path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        self.header: dict[str, Any] = header
        self.start = 8 + n
        self.size = self.path.stat().st_size

    def names(self) -> list[str]:
        return list(self.header)

    def read(self, name: str) -> Tensor:
        """Tensor ``name``; a ValueError when its entry is malformed or the file too short."""
        entry = self.header[name]
        dtype, shape = SAFETENSORS_DTYPES[entry["dtype"]], [int(d) for d in entry["shape"]]
        begin, end = (int(x) for x in entry["data_offsets"])
        numel = math.prod(shape)
        if end - begin != numel * dtype.itemsize or self.start + end > self.size or begin < 0:
            raise ValueError(f"tensor {name!r}: offsets {begin}..{end} do not fit its shape")
        data = torch.empty(end - begin, dtype=torch.uint8)
        with self.path.open("rb") as f:
            f.seek(self.start + begin)
            if f.readinto(data.numpy().data) != end - begin:
                raise ValueError(f"tensor {name!r}: the file ends early")
        return data.view(dtype).reshape(shape)


SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
