"""Build the model a spec asks for, and reload one from a checkpoint. Runs without Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from raytune_ft.errors import UserError
from raytune_ft.modeling.sources import resolve_model_source
from raytune_ft.spec.sections import ModelSpec, PeftSpec
from raytune_ft.tasks.base import Task


def _hub_kwargs(spec: ModelSpec) -> dict[str, Any]:
    return {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}


def _model_error(spec: ModelSpec, exc: Exception) -> UserError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(
        f"model.name_or_path: cannot load {spec.name_or_path!r}: {first} "
        "(expected a local model folder or a reachable Hugging Face hub id)"
    )


def load_tokenizer(spec: ModelSpec) -> PreTrainedTokenizerBase:
    source = resolve_model_source(spec.name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **_hub_kwargs(spec))
    except (OSError, ValueError) as exc:
        raise _model_error(spec, exc) from None
    if tokenizer.pad_token is None:  # decoder-only tokenizers often lack one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def auto_class(task: Task) -> Any:
    return getattr(transformers, task.auto_model)


def build_model(
    model_spec: ModelSpec,
    peft_spec: PeftSpec,
    task: Task,
    labels: list[str] | None,
    empty: bool = False,
    dtype: torch.dtype | None = None,
    attention: str | None = None,
    liger: bool = False,
) -> torch.nn.Module:
    """The task's model (a fresh head for `labels` where it has one), in LoRA if asked.

    Pretrained weights (`model.init: pretrained`) or a fresh model of the config's shape
    (`random`), with `model.config_overrides` applied either way. `dtype` is the training
    dtype: weights are created or read in it, never in fp32 first and then cast. `empty`
    builds the same model on the meta device, with no weights read or allocated: the
    pre-flight uses it to find configuration errors (PEFT targets, the architecture) in
    seconds on the driver, before any worker starts. `attention` picks the attention kernels
    (None: the model's default); `liger` patches in liger-kernel's Triton kernels.
    """
    source = resolve_model_source(model_spec.name_or_path)
    config = load_config(model_spec, task, labels)
    cls = auto_class(task)
    kernels = {"attn_implementation": attention} if attention else {}
    try:
        if empty:
            with torch.device("meta"):
                model = cls.from_config(
                    config, trust_remote_code=model_spec.trust_remote_code, **kernels
                )
        elif model_spec.init == "random":
            model = cls.from_config(
                config, trust_remote_code=model_spec.trust_remote_code, dtype=dtype, **kernels
            )
        else:
            model = cls.from_pretrained(
                source, config=config, dtype=dtype, **kernels, **_hub_kwargs(model_spec)
            )
    except (OSError, ValueError) as exc:
        if attention and attention in str(exc):
            raise UserError(
                f"performance.attention: {attention!r} is not supported by "
                f"{type(config).__name__} ({str(exc).splitlines()[0]})"
            ) from None
        raise _model_error(model_spec, exc) from None
    if liger:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    if peft_spec.method == "lora":
        model = _with_lora(model, peft_spec, task)
    return model


def load_config(model_spec: ModelSpec, task: Task, labels: list[str] | None) -> Any:
    """The model's config with the task's head settings and the spec's overrides applied."""
    from transformers import AutoConfig

    source = resolve_model_source(model_spec.name_or_path)
    try:
        config = AutoConfig.from_pretrained(
            source, **task.config_kwargs(labels), **_hub_kwargs(model_spec)
        )
    except (OSError, ValueError) as exc:
        raise _model_error(model_spec, exc) from None
    unknown = sorted(k for k in model_spec.config_overrides if not hasattr(config, k))
    if unknown:
        raise UserError(
            f"model.config_overrides.{unknown[0]}: {type(config).__name__} has no such field "
            "(a typo would otherwise be stored and ignored)"
        )
    for key, value in model_spec.config_overrides.items():
        setattr(config, key, value)
    return config


# Architectures whose learned absolute position table caps the input length (an allowlist:
# relative or rotary positions, as in DeBERTa, T5 or Llama, set no hard cap whatever their
# config's max_position_embeddings says). RoBERTa-style tables start after the padding index.
_ABSOLUTE_POSITIONS = {"bert", "distilbert", "electra", "albert", "gpt2"}
_PADDING_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer"}


def absolute_positions(config: Any) -> int | None:
    """How many tokens the model's position table holds; None when it sets no hard cap."""
    model_type = getattr(config, "model_type", "")
    positions = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    if positions is None or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    if model_type in _PADDING_OFFSET_POSITIONS:
        return positions - (config.pad_token_id or 0) - 1
    return positions if model_type in _ABSOLUTE_POSITIONS else None


def _with_lora(model: torch.nn.Module, peft_spec: PeftSpec, task: Task) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type=task.peft_task_type,  # SEQ_CLS also trains and saves the new head
        r=peft_spec.r,
        lora_alpha=peft_spec.alpha,
        lora_dropout=peft_spec.dropout,
        target_modules=peft_spec.target_modules,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}
        names = sorted(n for n in leaves if not n.isdigit())
        raise UserError(
            f"peft.target_modules: {str(exc).splitlines()[0]} "
            f"(module names in this model: {', '.join(names[:40])})"
        ) from None


def load_trained_model(
    model_dir: str | Path, model_spec: ModelSpec, task: Task, labels: list[str] | None
) -> torch.nn.Module:
    """A model saved by a checkpoint: a full model folder, or a LoRA adapter over its base."""
    model_dir = Path(model_dir)
    cls = auto_class(task)
    if (model_dir / "adapter_config.json").exists():
        from peft import PeftConfig, PeftModel

        base_path = PeftConfig.from_pretrained(str(model_dir)).base_model_name_or_path
        base = cls.from_pretrained(
            resolve_model_source(base_path), **task.config_kwargs(labels), **_hub_kwargs(model_spec)
        )
        return PeftModel.from_pretrained(base, str(model_dir))
    return cls.from_pretrained(str(model_dir))
