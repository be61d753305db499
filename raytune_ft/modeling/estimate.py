"""Pre-flight estimate of one trial: parameters, per-device memory and step time, before launch.

Parameter counts are exact: the task's model is built on the meta device from its config (no
weights read) through the same `build_model` the workers use, PEFT wrapper included. Memory
and time are formulas over those counts and the spec's run settings, in pure functions over
small dataclasses (`ModelShape`, `Setup`), so each term is unit-tested without Ray or a GPU.

Memory per device, in bytes (P parameters, T of them trainable, p bytes per training-dtype
element: 4 for fp32, 2 for bf16/fp16; W workers; ZeRO partitions optimizer state from stage 1,
gradients from stage 2, weights at stage 3 -- Rajbhandari et al. 2020, "ZeRO: Memory
Optimizations Toward Training Trillion Parameter Models", section 5):

- weights: P*p (divided by W at stage 3, where one gathered layer is added; offloaded params
  leave only that gathered layer on the device). The model is created in the training dtype.
- optimizer: AdamW's two fp32 moments, 8*T, plus DeepSpeed's fp32 master copy, 4*T, which
  it keeps for 16-bit training and, at ZeRO >= 1, for fp32 too (its flat fp32 partition is a
  clone); divided by W from stage 1. A frozen parameter (a PEFT base) has none of these.
- gradients: T*p (divided by W from stage 2). The optimizer step also builds, from ZeRO-1 on,
  a flat copy of the gradient partition (T*p/W) and in 16-bit training its fp32 cast (4*T/W;
  at ZeRO-0 only the fp32 copy, 4*T) and frees them there
  (deepspeed/runtime/zero/stage_1_and_2.py, "get rid of the fp32 gradients"): they never meet
  the activations, which backward has freed by then, so the peak counts the larger of the two
  (`Memory.step_gradients`).
- buffers: DeepSpeed ZeRO-1/2/3's gradient-reduction bucket, `reduce_bucket_size` = 5e8
  elements of the training dtype, allocated whole (`torch.empty`) on a GPU (1 GB in bf16,
  whatever the model's size). On CPU only the pages written count towards resident memory:
  at most T elements.
- activations: per transformer layer and token, the tensors autograd keeps for backward
  (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
  section 4.1: s*b*h*(34 + 5*a*s/h) bytes per layer in 16-bit with a 4h MLP), written for any
  width: p*(2h norm inputs + h attention input + (q + 2*kv) Q/K/V + q attention output + h MLP
  input + m*I MLP intermediates) + 2h dropout masks when the model has hidden dropout, where q
  = heads * head_dim (the hidden size h unless the config sets head_dim otherwise), where m =
  2 for a GELU MLP (its input and output) and 4 for a gated one (gate, up, activation,
  product; Llama's SwiGLU). A mask element is a byte on GPU and a noise element of p bytes on
  CPU (torch's CPU dropout multiplies by a noise tensor). Eager attention also stores the a*s
  attention matrix per token (p bytes, plus p + mask with attention dropout: Korthikanti's
  5*a*s/h term); SDPA and flash-attention keep only the log-sum-exp, 4*a bytes, except on CPU
  with attention dropout, where SDPA runs its math path in fp32 and keeps fp32 copies of Q, K
  and V and the attention matrices eager keeps, at 4 bytes. RMS norms computed in Python keep
  their input upcast to fp32 ((4 - p)*h more than the p*h counted), the normalized tensor
  their weight multiplies when that weight trains (p*h; Gemma's in fp32) and 1/rms (4 bytes);
  T5's keep the whole fp32 copy beside their input; per-head norms (Qwen3's q_norm, k_norm)
  run over every head and keep their own input too (`RmsNorm`). Outside the layers: the
  embedding output and final norm input (2*p*h), and for LM tasks the logits over the
  vocabulary, V*(p + 8) bytes per token (the logits, their fp32 upcast and the fp32
  log-softmax of the cross-entropy). Tokens are micro_batch_size * data.max_length: an upper
  bound where batches pad only to their longest row. Liger kernels (`performance.liger`) keep
  three gated-MLP intermediates instead of four (their SwiGLU keeps gate and up; the down
  projection keeps the product), no Python RMS norm, and no logits (their fused linear
  cross-entropy works in chunks). LoRA adds per adapted Linear in the layers (one outside,
  BERT's pooler, sees one token per row) its rank-r output (p * r); with dropout, its
  dropped-out input and mask ((p + mask) * in_features), and then the frozen base's attention
  input, MLP input and MLP product (p*(2h + I)) are kept by no one.
  `tests/unit/test_estimate_activations.py` checks the layer formula against the tensors
  autograd keeps in Llama, Gemma, Qwen3 and BERT layers on CPU. With gradient checkpointing of
  every N-th layer, ceil(L/N) layers keep only their input (p*h) and one of them is recomputed
  at a time in backward (one layer's full set on top).

Step time: FLOPs per token of a training step are 2*M forward + 2*M backward through the
activations + 2*M_t for the weight gradients (M matmul weights, M_t of them trainable: a
frozen base costs 4*M, not 6*M; Kaplan et al. 2020, "Scaling Laws for Neural Language
Models", section 2.1), plus attention's QK^T and AV, 4*s*h per layer forward and twice that
backward, plus the forward of the recomputed layers. Time = FLOPs per device and step /
(the device's peak * an assumed utilisation, `UTILISATION`). No fixed runtime overhead is
added anywhere: the Python/torch runtime is not part of the estimate (see the README's
comparison with measured peaks for its size on CPU).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from raytune_ft.errors import UserError
from raytune_ft.spec.experiment import ExperimentSpec

GiB = 2**30
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
REDUCE_BUCKET_ELEMENTS = 500_000_000  # DeepSpeed's zero_optimization.reduce_bucket_size default
# Assumed fraction of the peak that training reaches: 0.4 of a GPU's dense tensor peak (the
# 1B full finetune on one H200 reached 0.51 with Liger, README "Figures of issue 8"); 0.5 of
# the CPU's measured matmul rate.
UTILISATION = {"cuda": 0.4, "cpu": 0.5}


@dataclass(frozen=True)
class ModelShape:
    """What the formulas need to know about the model, read from the meta-device build."""

    total_params: int
    trainable_params: int
    matmul_params: int  # weights every token is multiplied by (Linear, Conv1D, a tied LM head)
    trainable_matmul_params: int
    head_matmul_params: int  # of those, the output head's (outside the transformer layers)
    layers: int
    hidden: int
    heads: int
    kv_hidden: int  # key/value width: narrower than hidden under grouped-query attention
    intermediate: int
    gated_mlp: bool
    vocab: int
    hidden_dropout: bool
    attention_dropout: bool
    token_logits: bool  # LM tasks: logits over the vocabulary at every token
    largest_layer_params: int
    default_attention: str  # what the model uses when performance.attention is auto
    model_type: str = ""
    # LoRA: the adapted Linears' input widths and ranks, summed over the model; with LoRA
    # dropout each adapter keeps its own dropped-out copy of its input for backward.
    adapter_inputs: int = 0
    adapter_ranks: int = 0
    adapter_dropout: bool = False
    # RMS norms computed in Python (Llama's, Qwen's, Gemma's, T5's; not Liger's kernel):
    # what each keeps beyond the layer formula's count depends on its family (`RmsNorm`).
    rms_norms: tuple[RmsNorm, ...] = ()
    # heads * head_dim where it is not the hidden size (Qwen3, Gemma): the query's and the
    # attention output's width; 0: the hidden size
    query_hidden: int = 0


@dataclass(frozen=True)
class RmsNorm:
    """One Python RMS norm of the model, per token: `width` elements normalized (a per-head
    norm, Qwen3's q_norm, normalizes every head: heads * head_dim), `rows` 1/rms values."""

    family: Literal["llama", "gemma", "t5"]
    width: int
    rows: int
    trained: bool  # its weight trains: the tensor it multiplies is kept for the gradient
    in_layer: bool  # inside a transformer layer (else a final norm, counted outside)
    # A per-head norm sits between a projection and attention: the formula's Q/K count is
    # the normalized tensor attention keeps, not this norm's input, which it keeps too.
    per_head: bool = False

    def extra_bytes(self, p: int) -> int:
        """Bytes kept beyond the p * width input the layer formula counts.

        Llama (`LlamaRMSNorm`, and Qwen's, Mistral's): the input upcast to fp32 (a copy in
        16-bit training) and the normalized tensor in the training dtype. Gemma: the same,
        but the normalized tensor stays fp32 (`output * (1.0 + weight.float())`). T5: the
        fp32 copy feeds only the variance; the normalization multiplies the input itself,
        which is kept too, so the copy is extra even where the formula counts the input."""
        upcast = (4 - p) * self.width if self.family != "t5" else (4 * self.width if p < 4 else 0)
        normalized = (4 if self.family == "gemma" else p) * self.width if self.trained else 0
        own_input = p * self.width if self.per_head else 0
        return upcast + normalized + 4 * self.rows + own_input


@dataclass(frozen=True)
class Setup:
    """How one worker runs: the spec's settings, resolved for the device."""

    precision: Literal["fp32", "bf16", "fp16"]
    zero_stage: int
    workers: int
    offload_optimizer: bool
    offload_params: bool
    micro_batch_size: int
    seq_len: int
    accumulation: int
    checkpoint_every: int  # 0: none; N: every N-th layer
    eager_attention: bool  # stores the attention matrix
    on_gpu: bool
    liger: bool = False  # Liger kernels: SwiGLU keeps 3 intermediates, no logits are stored


@dataclass(frozen=True)
class Memory:
    """Bytes per device by kind; `host` is what offload moved to host memory (per worker)."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    buffers: int
    host: int = 0
    # The optimizer step's flat copy of the gradient partition and, in 16-bit training, its
    # fp32 cast: DeepSpeed builds them in the step and frees them there, after backward has
    # freed the activations, so the peak holds one or the other, never both.
    step_gradients: int = 0

    @property
    def total(self) -> int:
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.buffers
            + max(self.activations, self.step_gradients)
        )


@dataclass(frozen=True)
class Device:
    """Where a worker runs and how much memory one worker may use there (None: unknown)."""

    kind: Literal["cuda", "cpu"]
    name: str
    memory_bytes: int | None
    memory_source: str
    peak_flops: float | None = None  # per second, in the training dtype
    bf16: bool = True


@dataclass(frozen=True)
class Estimate:
    shape: ModelShape
    setup: Setup
    memory: Memory
    device: Device
    flops_per_step: float  # one optimizer step, all workers together
    step_seconds: float | None
    labels_assumed: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool | None:
        if self.device.memory_bytes is None:
            return None
        return self.memory.total <= self.device.memory_bytes


# --------------------------------------------------------------------------- formulas


def memory(shape: ModelShape, setup: Setup) -> Memory:
    """Per-device bytes of one worker; see the module docstring for each term."""
    p = BYTES[setup.precision]
    total, trainable, w = shape.total_params, shape.trainable_params, setup.workers
    stage = setup.zero_stage
    opt_shards = w if stage >= 1 else 1
    grad_shards = w if stage >= 2 else 1
    host = 0

    gathered_layer = shape.largest_layer_params * p
    if stage == 3:
        weights = total * p // w + gathered_layer
        if setup.offload_params:
            host += total * p // w
            weights = gathered_layer
    else:
        weights = total * p

    master = trainable * 4 // opt_shards if (setup.precision != "fp32" or stage >= 1) else 0
    moments = trainable * 8 // opt_shards
    optimizer = master + moments
    gradients = trainable * p // grad_shards
    fp32_grads = trainable * 4 // opt_shards if setup.precision != "fp32" else 0
    # At the step ZeRO >= 1 flattens the partition's gradients (a copy in the training dtype)
    # and casts that to fp32 (another copy in 16-bit training); both live only in the step.
    flat = trainable * p // opt_shards if stage >= 1 else 0
    step_gradients = 0
    if setup.offload_optimizer:
        host += optimizer + fp32_grads
        optimizer = 0
    else:
        step_gradients = flat + fp32_grads

    buffers = 0
    if stage >= 1:
        # torch.empty: a GPU allocates the whole bucket; a CPU process only the pages written
        elements = (
            REDUCE_BUCKET_ELEMENTS if setup.on_gpu else min(REDUCE_BUCKET_ELEMENTS, trainable)
        )
        buffers = elements * p
    return Memory(
        weights=weights,
        gradients=gradients,
        optimizer=optimizer,
        activations=activation_bytes(shape, setup),
        buffers=buffers,
        host=host,
        step_gradients=step_gradients,
    )


def layer_activation_bytes_per_token(shape: ModelShape, setup: Setup) -> int:
    """Bytes one transformer layer keeps for backward, per token (Korthikanti et al. 2022,
    generalised to any MLP width, grouped-query attention and fp32)."""
    p = BYTES[setup.precision]
    h, kv, inter = shape.hidden, shape.kv_hidden, shape.intermediate
    # Gated: gate, up, activation, product; Liger's SwiGLU keeps gate and up and the down
    # projection keeps the product (liger_kernel/ops/swiglu.py saves a and b).
    mlp = ((3 if setup.liger else 4) if shape.gated_mlp else 2) * inter
    q = shape.query_hidden or h
    # On CPU, SDPA with attention dropout runs its math path, which works in fp32: it keeps
    # fp32 copies of Q, K and V and the attention matrices eager keeps, in fp32.
    math_path = shape.attention_dropout and not setup.on_gpu and not setup.eager_attention
    qkv = 4 if math_path else p
    kept = p * (2 * h + h + q + h + mlp) + qkv * (q + 2 * kv)
    mask = dropout_mask_bytes(setup)
    masks = 2 * h * mask if shape.hidden_dropout else 0
    layers = max(1, shape.layers)
    adapters = p * shape.adapter_ranks // layers  # each adapter's rank-r output (lora_B input)
    if shape.adapter_dropout:
        adapters += (p + mask) * shape.adapter_inputs // layers  # dropped-out input, its mask
        # A frozen Linear keeps no input for a weight gradient; an adapter without dropout
        # keeps that same tensor, one with dropout its own copy instead: the attention's and
        # the MLP's inputs and the MLP's product are then kept by no one.
        kept -= p * (2 * h + inter)
    if math_path:  # the probabilities, the dropout's noise and the dropped probabilities
        attention = shape.heads * setup.seq_len * 12
    elif setup.eager_attention:
        attention = (
            shape.heads * setup.seq_len * (p + ((p + mask) if shape.attention_dropout else 0))
        )
    else:
        attention = 4 * shape.heads  # the kernel's log-sum-exp, fp32
    norms = rms_norm_bytes_per_token(shape, setup, in_layer=True) // layers
    return kept + masks + adapters + attention + norms


def dropout_mask_bytes(setup: Setup) -> int:
    """A dropout's mask per element: a bool on GPU; torch's CPU dropout multiplies by a noise
    tensor of the input's dtype and keeps that."""
    return 1 if setup.on_gpu else BYTES[setup.precision]


def rms_norm_bytes_per_token(shape: ModelShape, setup: Setup, in_layer: bool) -> int:
    """What the model's Python RMS norms keep beyond the formula's count, per token: those
    inside the layers (all layers together), or the others."""
    if setup.liger:  # Liger's fused norm keeps its input and 1/rms only
        return 0
    p = BYTES[setup.precision]
    return sum(n.extra_bytes(p) for n in shape.rms_norms if n.in_layer == in_layer)


def activation_bytes(shape: ModelShape, setup: Setup) -> int:
    """Activations of one micro-batch at the end of forward, with checkpointing applied."""
    p = BYTES[setup.precision]
    tokens = setup.micro_batch_size * setup.seq_len
    layer = layer_activation_bytes_per_token(shape, setup)
    checkpointed = checkpointed_layers(shape.layers, setup.checkpoint_every)
    kept = (shape.layers - checkpointed) * layer + checkpointed * p * shape.hidden
    if checkpointed:
        kept += layer  # the checkpointed layer being recomputed in backward
    outside = 2 * p * shape.hidden
    outside += shape.hidden * dropout_mask_bytes(setup) if shape.hidden_dropout else 0
    outside += rms_norm_bytes_per_token(shape, setup, in_layer=False)  # final norms
    if shape.token_logits and not setup.liger:  # Liger's fused linear cross-entropy: none
        outside += shape.vocab * (p + 8)
    return tokens * (kept + outside)


def checkpointed_layers(layers: int, every: int) -> int:
    """transformers checkpoints the layers whose index is a multiple of `every`."""
    return 0 if every <= 0 else math.ceil(layers / every)


def flops_per_token(shape: ModelShape, setup: Setup) -> float:
    """Training FLOPs per token: forward, backward, recomputation (module docstring)."""
    m, m_t = shape.matmul_params, shape.trainable_matmul_params
    attention = 4 * setup.seq_len * shape.hidden * shape.layers  # forward QK^T and AV
    flops = 2 * m + 2 * m + 2 * m_t + 3 * attention
    checkpointed = checkpointed_layers(shape.layers, setup.checkpoint_every)
    if checkpointed and shape.layers:
        block_forward = 2 * (m - shape.head_matmul_params) + attention
        flops += block_forward * checkpointed / shape.layers
    return float(flops)


def flops_per_step(shape: ModelShape, setup: Setup) -> float:
    """One optimizer step of all workers (tokens at max_length: an upper bound)."""
    tokens = setup.micro_batch_size * setup.seq_len * setup.accumulation * setup.workers
    return flops_per_token(shape, setup) * tokens


def step_seconds(shape: ModelShape, setup: Setup, device: Device) -> float | None:
    if not device.peak_flops:
        return None
    per_device = flops_per_step(shape, setup) / setup.workers
    return per_device / (device.peak_flops * UTILISATION[device.kind])


# --------------------------------------------------------------------------- devices

# Dense (no sparsity) peak FLOP/s from the vendors' datasheets: (16-bit tensor core, fp32).
# H100/H200 SXM: NVIDIA H100 and H200 Tensor Core GPU datasheets (989 TF bf16, 67 TF fp32;
# H100 PCIe 756 / 51); A100: NVIDIA A100 datasheet (312 bf16, 19.5 fp32: torch matmuls do not
# use TF32 by default); L4: NVIDIA L4 datasheet (121 bf16 dense, 30.3 fp32); A10: NVIDIA A10
# datasheet (125 bf16 dense, 31.2 fp32; AWS's A10G has no NVIDIA datasheet of its own and is
# counted as an A10); T4: NVIDIA T4 datasheet (65 fp16, 8.1 fp32, no bf16); V100 SXM2: NVIDIA
# V100 datasheet (125 fp16, 15.7 fp32; PCIe 112 / 14). Matched by substring of the torch
# device name, most specific first.
GPU_PEAKS: list[tuple[str, float, float, bool]] = [
    ("H200", 989e12, 67e12, True),
    ("H100 PCIe", 756e12, 51e12, True),
    ("H100", 989e12, 67e12, True),
    ("A100", 312e12, 19.5e12, True),
    ("L4", 121e12, 30.3e12, True),
    ("A10", 125e12, 31.2e12, True),
    ("T4", 65e12, 8.1e12, False),
    ("V100 PCIe", 112e12, 14e12, False),
    ("V100", 125e12, 15.7e12, False),
]


def gpu_peak(name: str, precision: str) -> tuple[float | None, bool]:
    """(peak FLOP/s in `precision`, has bf16) for a device name; (None, True) if unknown."""
    for key, half, single, bf16 in GPU_PEAKS:
        if key.lower() in name.lower():
            return (single if precision == "fp32" else half), bf16
    return None, True


@functools.cache
def cpu_peak_flops(threads: int) -> float:
    """This CPU's fp32 matmul rate with `threads` threads, measured once per process: the
    fastest of the 512x512 matmuls run in about 0.2 s (the fastest, not the mean, so that
    other processes sharing the cores lower it less; still only a rough figure on a loaded
    machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        a, b = torch.randn(512, 512), torch.randn(512, 512)
        a @ b  # warm-up
        fastest, runs, started = math.inf, 0, time.perf_counter()
        # At least 5 runs: on a loaded machine a single one may wait for a core throughout.
        while runs < 5 or time.perf_counter() - started < 0.2:
            tick = time.perf_counter()
            a @ b
            fastest = min(fastest, time.perf_counter() - tick)
            runs += 1
    finally:
        torch.set_num_threads(before)
    return 2 * 512**3 / fastest


def device_for(spec: ExperimentSpec, use_gpu: bool | None = None, here: bool = False) -> Device:
    """The device one worker of `spec` gets and its memory share.

    This machine when it is the cluster (a local Ray) or when `here` (a trial's own process,
    on the node that runs it): a GPU's total memory times the worker's share of it
    (`scaling.gpus_per_worker` below 1 shares one GPU), or the host's RAM divided among the
    workers on it. A remote cluster: its declared `cluster.node_groups` (GPU memory from
    `gpu_memory_gib`, host memory from `memory`); unknown otherwise.
    """
    from raytune_ft.launch.local_ray import starts_local_ray

    local = starts_local_ray(spec.cluster)
    groups = spec.cluster.node_groups
    scaling = spec.scaling
    if use_gpu is None:
        if isinstance(scaling.use_gpu, bool):
            use_gpu = scaling.use_gpu
        elif local or here:
            import torch

            use_gpu = torch.cuda.is_available()
        else:
            use_gpu = any(g.gpus > 0 for g in groups)
    share = min(1.0, scaling.gpus_per_worker)
    if use_gpu:
        if local or here:
            import torch

            if torch.cuda.is_available():
                props = torch.cuda.get_device_properties(0)
                return Device(
                    "cuda",
                    props.name,
                    int(props.total_memory * share),
                    f"{props.name}, {props.total_memory / GiB:.1f} GiB"
                    + (f" x {share:g} (gpus_per_worker)" if share < 1 else ""),
                )
        sized = [g for g in groups if g.gpus > 0 and g.gpu_memory_gib is not None]
        if sized and len(sized) == len([g for g in groups if g.gpus > 0]):
            smallest = min(sized, key=lambda g: g.gpu_memory_gib or 0)
            gib = smallest.gpu_memory_gib or 0
            return Device(
                "cuda",
                "GPU",
                int(gib * GiB * share),
                f"cluster.node_groups {smallest.name!r}: {gib:g} GiB per GPU"
                + (f" x {share:g} (gpus_per_worker)" if share < 1 else ""),
            )
        return Device("cuda", "GPU", None, "unknown (declare cluster.node_groups[].gpu_memory_gib)")
    if local or here:
        import psutil

        ram = psutil.virtual_memory().total
        workers = scaling.num_workers if local else 1
        return Device(
            "cpu",
            "CPU",
            ram // workers,
            f"host RAM {ram / GiB:.1f} GiB" + (f" / {workers} workers" if workers > 1 else ""),
        )
    if groups:
        from raytune_ft.k8s.validate import quantity

        per_worker = []
        for group in groups:
            slots = max(1, group.cpus // scaling.cpus_per_worker)
            per_worker.append((int(quantity(group.memory) or 0) // slots, group.name))
        most, name = max(per_worker)
        return Device("cpu", "CPU", most, f"cluster.node_groups {name!r}: memory per worker")
    return Device("cpu", "CPU", None, "unknown (remote cluster without cluster.node_groups)")


# --------------------------------------------------------------------------- from a spec


@functools.cache
def _shape_of(key: str) -> tuple[ModelShape, bool]:
    """The shape of the model a (model, peft, task, labels) JSON key describes; cached: a
    sweep's corners often share one model."""
    from pydantic import TypeAdapter

    from raytune_ft.modeling.loading import build_model
    from raytune_ft.spec.sections import ModelSpec, PeftSpec
    from raytune_ft.spec.task_sections import TaskSpec
    from raytune_ft.tasks.registry import task_for

    raw = json.loads(key)
    task = task_for(TypeAdapter(TaskSpec).validate_python(raw["task"]))
    model = build_model(
        ModelSpec.model_validate(raw["model"]),
        PeftSpec.model_validate(raw["peft"]),
        task,
        raw["labels"],
        empty=True,
    )
    return shape_of_model(model), raw["labels_assumed"]


def shape_of_model(model: Any) -> ModelShape:
    """Counts and widths of a built (meta-device) model, PEFT wrapper included."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    params = list(model.named_parameters())
    total = sum(p.numel() for _, p in params)
    trainable = sum(p.numel() for _, p in params if p.requires_grad)
    output = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    head_weight = getattr(output, "weight", None)

    matmul = trainable_matmul = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        is_matmul = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
        if is_matmul and weight is not None:
            matmul += weight.numel()
            trainable_matmul += weight.numel() if weight.requires_grad else 0
    tied = head_weight is not None and not isinstance(output, torch.nn.Linear)
    if tied:  # an output embedding that is not a Linear still multiplies every token
        matmul += head_weight.numel()
    head = head_weight.numel() if head_weight is not None else 0

    def first(*names: str, default: Any = None) -> Any:
        for name in names:
            value = getattr(config, name, None)
            if value is not None:
                return value
        return default

    hidden = int(first("hidden_size", "d_model", "n_embd", "dim"))
    layers = int(first("num_hidden_layers", "num_layers", "n_layer", "n_layers"))
    layers += int(first("num_decoder_layers", default=0) or 0)
    heads = int(first("num_attention_heads", "num_heads", "n_head", "n_heads"))
    head_dim = int(first("head_dim", "d_kv", default=hidden // heads) or hidden // heads)
    kv_heads = int(first("num_key_value_heads", default=heads) or heads)
    intermediate = int(first("intermediate_size", "d_ff", "n_inner", default=4 * hidden) or 0)
    names = [name for name, _ in model.named_modules()]
    gated = any(n.endswith(("gate_proj", "wi_0", "w1", "gate_up_proj")) for n in names)
    hidden_dropout = float(first("hidden_dropout_prob", "dropout_rate", "resid_pdrop", default=0))
    attention_dropout = float(
        first("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop", default=0)
    )
    blocks = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.ModuleList) and len(m) and hasattr(m[0], "parameters")
    ]
    largest = max(
        (sum(p.numel() for p in layer.parameters()) for ml in blocks for layer in ml), default=0
    )
    in_layers = {id(m) for ml in blocks for layer in ml for m in layer.modules()}
    rms_norms = tuple(
        norm
        for name, module in model.named_modules()
        if (norm := _rms_norm(name, module, id(module) in in_layers, hidden, heads, kv_heads))
    )
    adapter_inputs = adapter_ranks = 0
    adapter_dropout = False
    for module in model.modules():
        lora_a = getattr(module, "lora_A", None)
        # An adapter outside the layers (BERT's pooler) sees one token per row: not counted.
        if id(module) not in in_layers:
            continue
        if isinstance(lora_a, torch.nn.ModuleDict) and hasattr(module, "in_features"):
            for name, down in lora_a.items():
                adapter_inputs += module.in_features
                adapter_ranks += down.out_features
                dropout = module.lora_dropout[name]
                adapter_dropout |= not isinstance(dropout, torch.nn.Identity)
    return ModelShape(
        total_params=total,
        trainable_params=trainable,
        matmul_params=matmul,
        trainable_matmul_params=trainable_matmul,
        head_matmul_params=head,
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_hidden=kv_heads * head_dim,
        query_hidden=heads * head_dim if heads * head_dim != hidden else 0,
        intermediate=intermediate,
        gated_mlp=gated,
        vocab=int(first("vocab_size", default=0) or 0),
        hidden_dropout=hidden_dropout > 0,
        attention_dropout=attention_dropout > 0,
        token_logits=output is not None,
        largest_layer_params=largest,
        default_attention=str(getattr(config, "_attn_implementation", None) or "eager"),
        model_type=str(getattr(config, "model_type", "")),
        adapter_inputs=adapter_inputs,
        adapter_ranks=adapter_ranks,
        adapter_dropout=adapter_dropout,
        rms_norms=rms_norms,
    )


def _rms_norm(
    name: str, module: Any, in_layer: bool, hidden: int, heads: int, kv_heads: int
) -> RmsNorm | None:
    """The module as an `RmsNorm` when it is a Python RMS norm, else None."""
    kind = type(module).__name__
    if kind.startswith("Liger") or not kind.endswith(("RMSNorm", "T5LayerNorm")):
        return None
    family = "t5" if kind.endswith("T5LayerNorm") else "gemma" if "Gemma" in kind else "llama"
    weight = getattr(module, "weight", None)
    width = int(weight.numel()) if weight is not None else hidden
    rows = 1
    per_head = width < hidden  # Qwen3's q_norm and k_norm: one per head, over every head
    if per_head:
        rows = kv_heads if name.rsplit(".", 1)[-1].startswith("k") else heads
        width *= rows
    trained = weight is not None and bool(weight.requires_grad)
    return RmsNorm(family, width, rows, trained, in_layer, per_head)


def model_shape(spec: ExperimentSpec, labels: list[str] | None = None) -> tuple[ModelShape, bool]:
    """The model's shape and whether the class count was assumed (labels come from the data
    at train time; the head's size is all they change)."""
    assumed = False
    if labels is None:
        labels = getattr(spec.task, "labels", None)
        if labels is None and getattr(spec.task, "label_column", None) is not None:
            labels, assumed = ["0", "1"], True
    key = json.dumps(
        {
            "model": spec.model.model_dump(mode="json"),
            "peft": spec.peft.model_dump(mode="json"),
            "task": spec.task.model_dump(mode="json"),
            "labels": labels,
            "labels_assumed": assumed,
        },
        sort_keys=True,
    )
    return _shape_of(key)


def setup_for(spec: ExperimentSpec, shape: ModelShape, device: Device) -> Setup:
    from raytune_ft.train.policies import checkpoint_every, resolve_precision

    on_gpu = device.kind == "cuda"
    precision = resolve_precision(spec.train.precision, on_gpu, on_gpu and device.bf16)
    attention = spec.performance.attention
    eager = attention == "eager" or (attention == "auto" and shape.default_attention == "eager")
    liger = spec.performance.liger is True or (
        spec.performance.liger == "auto" and on_gpu and _liger_patches(shape.model_type)
    )
    return Setup(
        precision=precision,
        zero_stage=spec.deepspeed.zero_stage,
        workers=spec.scaling.num_workers,
        offload_optimizer=spec.deepspeed.offload_optimizer != "none",
        offload_params=spec.deepspeed.offload_params != "none",
        micro_batch_size=spec.train.micro_batch_size,
        seq_len=spec.data.max_length,
        accumulation=spec.train.gradient_accumulation_steps,
        checkpoint_every=checkpoint_every(spec.performance.gradient_checkpointing),
        eager_attention=eager,
        on_gpu=on_gpu,
        liger=liger,
    )


def _liger_patches(model_type: str) -> bool:
    """Whether `performance.liger: auto` turns Liger on for this model on a GPU worker (as
    far as this machine's installation says: the workers' image may differ)."""
    from raytune_ft.modeling.speed import installed_extras, liger_model_types

    return "liger_kernel" in installed_extras() and model_type in liger_model_types()


def with_peak(device: Device, precision: str, threads: int) -> Device:
    if device.kind == "cpu":
        return replace(device, peak_flops=cpu_peak_flops(min(threads, os.cpu_count() or 1)))
    peak, bf16 = gpu_peak(device.name, precision)
    return replace(device, peak_flops=peak, bf16=bf16)


def estimate(
    spec: ExperimentSpec,
    device: Device | None = None,
    labels: list[str] | None = None,
    measure_cpu: bool = True,
) -> Estimate:
    """The estimate of one trial of `spec` on `device` (default: `device_for(spec)`)."""
    device = device_for(spec) if device is None else device
    shape, assumed = model_shape(spec, labels)
    _, bf16 = gpu_peak(device.name, "bf16")
    device = replace(device, bf16=bf16)
    setup = setup_for(spec, shape, device)
    if measure_cpu or device.kind == "cuda":
        device = with_peak(device, setup.precision, spec.scaling.cpus_per_worker)
    notes = []
    if assumed:
        notes.append("the head is sized for 2 classes (the real count comes from the data)")
    return Estimate(
        shape=shape,
        setup=setup,
        memory=memory(shape, setup),
        device=device,
        flops_per_step=flops_per_step(shape, setup),
        step_seconds=step_seconds(shape, setup, device),
        labels_assumed=assumed,
        notes=notes,
    )


def gib(value: float) -> str:
    """Bytes as GiB, or MiB below one GiB (a small model's rows stay readable)."""
    return f"{value / GiB:.1f} GiB" if value >= GiB else f"{value / 2**20:.1f} MiB"


def memory_known(spec: ExperimentSpec) -> bool:
    """Whether the sweep's pre-flight (`memory_problem(spec)`) knows the devices' memory."""
    return device_for(spec).memory_bytes is not None


def memory_problem(
    spec: ExperimentSpec, use_gpu: bool | None = None, here: bool = False
) -> str | None:
    """One line with the numbers when a worker of `spec` cannot fit in its device's memory;
    None when it fits, or when the device's memory or the model cannot be known here (other
    checks report a model that cannot be built)."""
    device = device_for(spec, use_gpu, here)
    if device.memory_bytes is None:
        return None
    try:
        found = estimate(spec, device, measure_cpu=False)
    except UserError:
        return None
    except Exception:  # a model that cannot be built on the meta device: the workers say why
        return None
    if found.fits is not False:
        return None
    mem = found.memory
    parts = ", ".join(
        f"{name} {gib(value)}"
        for name, value in (
            ("weights", mem.weights),
            ("gradients", mem.gradients),
            ("optimizer", mem.optimizer),
            # the larger of the two: the one the total counts
            ("activations", mem.activations)
            if mem.activations >= mem.step_gradients
            else (
                "fp32 gradients of the optimizer step (more than the activations)",
                mem.step_gradients,
            ),
            ("buffers", mem.buffers),
        )
        if value
    )
    where = "device" if device.kind == "cuda" else "worker's share of host RAM"
    return (
        f"needs {gib(mem.total)} per worker ({parts}) but the {where} has "
        f"{gib(device.memory_bytes)} ({device.memory_source}); lower "
        "train.micro_batch_size or data.max_length, enable performance.gradient_checkpointing, "
        "a higher deepspeed.zero_stage over more workers, or deepspeed offload"
    )


# --------------------------------------------------------------------------- sweeps, output

MAX_POINTS = 4096  # as the sweep's own pre-flight (sweep/runner.py _check_space)


def sweep_points(spec: ExperimentSpec) -> list[tuple[dict[str, Any], ExperimentSpec]]:
    """The valid corners of the sweep's space (every combination of each key's bounds and
    choices, conditions applied), as (params, spec); each key's corners alone when the
    combinations are too many."""
    from raytune_ft.spec import validate_spec
    from raytune_ft.sweep.space import active_params, apply_params, joint_corners

    sweep = spec.sweep
    if sweep is None:
        return []
    base = spec.model_dump(mode="json")
    chosen = joint_corners(sweep, base, MAX_POINTS)
    if chosen is None:
        chosen = [
            active_params(sweep, base, {key: value})
            for key, dist in sweep.space.items()
            for value in dist.corners
        ]
    points: list[tuple[dict[str, Any], ExperimentSpec]] = []
    for params in chosen:
        if any(params == seen for seen, _ in points):
            continue
        try:
            points.append((params, validate_spec(apply_params(base, params))))
        except UserError:  # `tune` names it; the estimate covers the points that can run
            continue
    return points


def largest_point(spec: ExperimentSpec, device: Device) -> tuple[dict[str, Any], Estimate] | None:
    """The corner of the sweep's space that needs the most memory per device."""
    found = [(params, estimate(point, device)) for params, point in sweep_points(spec)]
    if not found:
        return None
    return max(found, key=lambda item: item[1].memory.total)


def as_dict(found: Estimate) -> dict[str, Any]:
    """The estimate as plain data (`raytune-ft estimate --json`)."""
    from dataclasses import asdict

    mem = found.memory
    return {
        "parameters": {
            "total": found.shape.total_params,
            "trainable": found.shape.trainable_params,
        },
        "setup": asdict(found.setup),
        "memory_bytes": {
            "weights": mem.weights,
            "gradients": mem.gradients,
            "optimizer": mem.optimizer,
            "activations": mem.activations,
            "buffers": mem.buffers,
            "step_gradients": mem.step_gradients,
            "total": mem.total,
            "host_offloaded": mem.host,
        },
        "device": {
            "kind": found.device.kind,
            "name": found.device.name,
            "memory_bytes": found.device.memory_bytes,
            "memory_source": found.device.memory_source,
            "peak_flops": found.device.peak_flops,
            "assumed_utilisation": UTILISATION[found.device.kind],
        },
        "fits": found.fits,
        "flops_per_step": found.flops_per_step,
        "step_seconds": found.step_seconds,
        "notes": found.notes,
    }


def report_rows(found: Estimate) -> list[tuple[str, str]]:
    """(label, value) rows of the estimate's table."""
    shape, setup, mem, device = found.shape, found.setup, found.memory, found.device
    share = shape.trainable_params / max(1, shape.total_params)
    offload = [
        name
        for name, on in (("optimizer", setup.offload_optimizer), ("params", setup.offload_params))
        if on
    ]
    checkpointing = (
        "off" if not setup.checkpoint_every else f"every {setup.checkpoint_every} layer(s)"
    )
    rows = [
        ("parameters", f"{shape.total_params:,}"),
        ("trainable", f"{shape.trainable_params:,} ({share:.2%})"),
        (
            "run",
            f"{setup.precision}, ZeRO-{setup.zero_stage} over {setup.workers} worker(s)"
            + (f", offload {' + '.join(offload)} to host" if offload else ""),
        ),
        (
            "micro-batch",
            f"{setup.micro_batch_size} x {setup.seq_len} tokens"
            + (f", {setup.accumulation} accumulated" if setup.accumulation > 1 else "")
            + f"; checkpointing {checkpointing}; "
            + ("eager attention" if setup.eager_attention else "no stored attention matrix"),
        ),
        ("weights", gib(mem.weights)),
        ("gradients", gib(mem.gradients)),
        ("optimizer state", gib(mem.optimizer)),
        ("activations", gib(mem.activations)),
        ("DeepSpeed buffers", gib(mem.buffers)),
    ]
    if mem.step_gradients:
        rows.append(
            ("fp32 gradients", f"{gib(mem.step_gradients)} (at the step, not with the activations)")
        )
    rows.append(("total per device", gib(mem.total)))
    if mem.host:
        rows.append(("host (offloaded)", f"{gib(mem.host)} per worker"))
    available = "unknown" if device.memory_bytes is None else gib(device.memory_bytes)
    rows.append(("available", f"{available} ({device.memory_source})"))
    rows.append(("fits", {True: "yes", False: "NO", None: "unknown"}[found.fits]))
    rows.append(("FLOPs per step", f"{found.flops_per_step:.3g} (all workers)"))
    if found.step_seconds is None:
        rows.append(("step time", f"unknown (no peak FLOP/s known for {device.name})"))
    else:
        rows.append(
            (
                "step time",
                f"{found.step_seconds:.3g} s at {UTILISATION[device.kind]:.0%} of "
                f"{device.peak_flops or 0:.3g} FLOP/s ({device.name})",
            )
        )
    return rows
