"""The pre-flight estimate: exact parameter counts, each memory term's rule, the fit check the
sweep uses, and the `raytune-ft estimate` command."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from helpers import minimal_spec
from typer.testing import CliRunner

from raytune_ft.cli import app
from raytune_ft.errors import UserError
from raytune_ft.modeling.estimate import (
    Device,
    ModelShape,
    RmsNorm,
    Setup,
    activation_bytes,
    device_for,
    estimate,
    flops_per_token,
    layer_activation_bytes_per_token,
    memory,
    memory_problem,
    model_shape,
    sweep_points,
)
from raytune_ft.spec import load_spec, validate_spec
from raytune_ft.sweep.runner import _check_space

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
CPU = Device("cpu", "CPU", 24 * 2**30, "test")

# A GPT-style layer as in Korthikanti et al.: MLP of 4h, full-width K/V, dropout everywhere.
GPT = ModelShape(
    total_params=1_000_000_000,
    trainable_params=1_000_000_000,
    matmul_params=900_000_000,
    trainable_matmul_params=900_000_000,
    head_matmul_params=50_000_000,
    layers=24,
    hidden=2048,
    heads=16,
    kv_hidden=2048,
    intermediate=8192,
    gated_mlp=False,
    vocab=50_000,
    hidden_dropout=True,
    attention_dropout=True,
    token_logits=True,
    largest_layer_params=40_000_000,
    default_attention="sdpa",
)
SETUP = Setup(
    precision="bf16",
    zero_stage=2,
    workers=1,
    offload_optimizer=False,
    offload_params=False,
    micro_batch_size=8,
    seq_len=1024,
    accumulation=1,
    checkpoint_every=0,
    eager_attention=False,
    on_gpu=True,
)


def test_a_16_bit_eager_layer_matches_korthikanti_et_al() -> None:
    # s*b*h*(34 + 5*a*s/h) bytes per layer, i.e. 34*h + 5*a*s per token.
    setup = replace(SETUP, eager_attention=True)
    expected = 34 * GPT.hidden + 5 * GPT.heads * setup.seq_len
    assert layer_activation_bytes_per_token(GPT, setup) == expected


def test_sdpa_drops_the_attention_matrix_and_fp32_doubles_the_stored_tensors() -> None:
    eager = layer_activation_bytes_per_token(GPT, replace(SETUP, eager_attention=True))
    sdpa = layer_activation_bytes_per_token(GPT, SETUP)
    assert eager - sdpa > GPT.heads * SETUP.seq_len * 4  # the a*s term is gone
    fp32 = layer_activation_bytes_per_token(GPT, replace(SETUP, precision="fp32"))
    masks = 2 * GPT.hidden  # dropout masks are one byte per element in any precision
    assert fp32 - masks == 2 * (sdpa - masks - 4 * GPT.heads) + 4 * GPT.heads


def test_fp32_gradients_of_the_step_never_add_to_the_activations() -> None:
    # DeepSpeed makes the fp32 gradient partition inside the optimizer step and frees it
    # there; the activations are gone by then: the peak holds the larger of the two.
    found = memory(GPT, SETUP)
    # bf16, one worker: the flattened partition (2 bytes) and its fp32 cast (4)
    assert found.step_gradients == (2 + 4) * GPT.trainable_params
    static = found.weights + found.gradients + found.optimizer + found.buffers
    assert found.total == static + max(found.activations, found.step_gradients)
    short = memory(GPT, replace(SETUP, micro_batch_size=1, seq_len=8))
    assert short.activations < short.step_gradients
    assert short.total == static + short.step_gradients
    # fp32: the flat copy only; ZeRO-0 in bf16: the fp32 copy only
    assert memory(GPT, replace(SETUP, precision="fp32")).step_gradients == (
        4 * GPT.trainable_params
    )
    assert memory(GPT, replace(SETUP, zero_stage=0)).step_gradients == 4 * GPT.trainable_params


def test_dropout_masks_are_bytes_on_gpu_and_noise_tensors_on_cpu() -> None:
    cpu = layer_activation_bytes_per_token(GPT, replace(SETUP, on_gpu=False))
    eager_gpu = layer_activation_bytes_per_token(GPT, replace(SETUP, eager_attention=True))
    # Two hidden dropouts of h: a byte per element on GPU, a bf16 noise element on CPU. With
    # attention dropout CPU SDPA runs its math path in fp32: Q, K and V as fp32 copies, and
    # probabilities, noise and dropped probabilities at 4 bytes each (eager on GPU: 2 + 2 + 1).
    masks = 2 * GPT.hidden
    qkv = (4 - 2) * (GPT.hidden + 2 * GPT.kv_hidden)
    attention = (12 - 5) * GPT.heads * SETUP.seq_len
    assert cpu - eager_gpu == masks + qkv + attention


def test_liger_keeps_three_mlp_intermediates_of_a_gated_mlp() -> None:
    gated = replace(GPT, gated_mlp=True, hidden_dropout=False, attention_dropout=False)
    plain = layer_activation_bytes_per_token(gated, SETUP)
    liger = layer_activation_bytes_per_token(gated, replace(SETUP, liger=True))
    assert plain - liger == 2 * GPT.intermediate  # one bf16 intermediate of four


def test_rms_norms_keep_an_fp32_input_and_the_normalized_tensor_per_family() -> None:
    h, heads = GPT.hidden, GPT.heads
    # bf16 (p = 2): the fp32 upcast adds 2h over the counted input, the normalized tensor of a
    # trained weight p*h (fp32 for Gemma), 4 bytes of 1/rms; T5 keeps the whole fp32 copy.
    expected = {
        RmsNorm("llama", h, 1, True, True): 2 * h + 2 * h + 4,
        RmsNorm("llama", h, 1, False, True): 2 * h + 4,
        RmsNorm("gemma", h, 1, True, True): 2 * h + 4 * h + 4,
        RmsNorm("t5", h, 1, True, True): 4 * h + 2 * h + 4,
        # a per-head norm (Qwen3's q_norm) keeps its own input too, and a 1/rms per head
        RmsNorm("llama", h, heads, True, True, per_head=True): 2 * h + 2 * h + 4 * heads + 2 * h,
    }
    base = layer_activation_bytes_per_token(GPT, SETUP)
    for norm, extra in expected.items():
        shape = replace(GPT, rms_norms=(norm,) * (2 * GPT.layers))  # two per layer
        assert layer_activation_bytes_per_token(shape, SETUP) - base == 2 * extra, norm
    fp32 = replace(SETUP, precision="fp32")
    llama = replace(GPT, rms_norms=(RmsNorm("llama", h, 1, True, True),) * (2 * GPT.layers))
    extra_fp32 = layer_activation_bytes_per_token(llama, fp32) - layer_activation_bytes_per_token(
        GPT, fp32
    )
    assert extra_fp32 == 2 * (4 * h + 4)  # no upcast copy in fp32
    final = replace(GPT, rms_norms=(RmsNorm("llama", h, 1, True, False),))
    assert layer_activation_bytes_per_token(final, SETUP) == base  # counted outside the layers
    assert activation_bytes(final, SETUP) > activation_bytes(GPT, SETUP)
    assert layer_activation_bytes_per_token(llama, replace(SETUP, liger=True)) == (
        layer_activation_bytes_per_token(GPT, replace(SETUP, liger=True))
    )  # Liger's fused norm keeps only what the formula already counts


def test_zero_2_over_4_workers_divides_gradients_and_optimizer_by_4() -> None:
    one = memory(GPT, SETUP)
    four = memory(GPT, replace(SETUP, workers=4))
    assert four.gradients * 4 == one.gradients
    assert four.optimizer * 4 == one.optimizer
    assert four.weights == one.weights  # replicated below stage 3
    assert four.activations == one.activations


def test_zero_stages_partition_optimizer_then_gradients_then_weights() -> None:
    by_stage = {s: memory(GPT, replace(SETUP, zero_stage=s, workers=8)) for s in range(4)}
    assert by_stage[1].optimizer * 8 == by_stage[0].optimizer
    assert by_stage[1].gradients > by_stage[2].gradients  # stage 1 keeps whole gradients
    assert by_stage[3].weights < by_stage[2].weights / 4
    assert by_stage[0].buffers == 0 < by_stage[2].buffers  # DeepSpeed's reduction bucket


def test_offload_moves_optimizer_state_to_the_host() -> None:
    on_device = memory(GPT, replace(SETUP, zero_stage=2, workers=2))
    offloaded = memory(GPT, replace(SETUP, zero_stage=2, workers=2, offload_optimizer=True))
    assert offloaded.optimizer == 0
    # The fp32 gradient partition goes to the host with the optimizer it feeds.
    assert offloaded.host == on_device.optimizer + 4 * GPT.trainable_params // 2
    assert offloaded.step_gradients == 0 < on_device.step_gradients
    assert offloaded.total < on_device.total
    params = memory(
        GPT, replace(SETUP, zero_stage=3, workers=2, offload_optimizer=True, offload_params=True)
    )
    assert params.weights == GPT.largest_layer_params * 2  # one gathered layer stays


def test_checkpointing_shrinks_activations_and_a_stride_lies_between() -> None:
    none = activation_bytes(GPT, SETUP)
    every = activation_bytes(GPT, replace(SETUP, checkpoint_every=1))
    second = activation_bytes(GPT, replace(SETUP, checkpoint_every=2))
    assert every < second < none
    assert every < none / 3


def test_frozen_weights_cost_two_thirds_of_the_flops() -> None:
    full = flops_per_token(GPT, SETUP)
    frozen = replace(GPT, trainable_matmul_params=0)
    attention = 12 * SETUP.seq_len * GPT.hidden * GPT.layers
    assert full - attention == 6 * GPT.matmul_params
    assert flops_per_token(frozen, SETUP) - attention == 4 * GPT.matmul_params
    assert flops_per_token(GPT, replace(SETUP, checkpoint_every=1)) > full  # recomputation


def test_parameter_counts_equal_the_real_models(tiny_bert: Path) -> None:
    import peft
    from transformers import AutoConfig, AutoModelForSequenceClassification

    spec = validate_spec(minimal_spec(model={"name_or_path": str(tiny_bert)}))
    lora = validate_spec(
        minimal_spec(
            model={"name_or_path": str(tiny_bert)},
            peft={"method": "lora", "r": 4, "target_modules": ["query", "value"]},
        )
    )
    config = AutoConfig.from_pretrained(tiny_bert, num_labels=3)
    real = AutoModelForSequenceClassification.from_config(config)  # real tensors, not meta
    shape, assumed = model_shape(spec, labels=["a", "b", "c"])
    assert not assumed
    assert shape.total_params == sum(p.numel() for p in real.parameters())
    assert shape.trainable_params == shape.total_params

    adapted = peft.get_peft_model(
        real,
        peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]),
    )
    lora_shape, _ = model_shape(lora, labels=["a", "b", "c"])
    assert lora_shape.total_params == sum(p.numel() for p in adapted.parameters())
    assert lora_shape.trainable_params == sum(
        p.numel() for p in adapted.parameters() if p.requires_grad
    )


def test_lora_shrinks_gradients_and_optimizer_state_by_the_trainable_share() -> None:
    full = estimate(load_spec(EXPERIMENTS / "quickstart.yaml", ["peft.method=none"]), CPU)
    lora = estimate(load_spec(EXPERIMENTS / "quickstart.yaml", []), CPU)
    share = lora.shape.trainable_params / full.shape.trainable_params
    assert share < 0.05
    assert lora.memory.optimizer == pytest.approx(full.memory.optimizer * share, rel=1e-6)
    assert lora.memory.weights >= full.memory.weights  # the frozen base stays whole
    assert lora.flops_per_step < full.flops_per_step


def test_node_groups_give_the_gpu_memory_share_of_a_worker() -> None:
    groups = [
        {"name": "cpu", "cpus": 8, "memory": "32Gi"},
        {"name": "gpu", "cpus": 8, "memory": "64Gi", "gpus": 1, "gpu_memory_gib": 24},
    ]
    spec = validate_spec(
        minimal_spec(
            cluster={"address": "10.0.0.1:6379", "node_groups": groups},
            scaling={"gpus_per_worker": 0.5},
        )
    )
    device = device_for(spec)
    assert device.kind == "cuda"
    assert device.memory_bytes == 12 * 2**30
    cpu = device_for(spec, use_gpu=False)
    assert cpu.memory_bytes == 64 * 2**30 // 8  # the roomiest group, per one-CPU worker
    unknown = validate_spec(minimal_spec(cluster={"address": "10.0.0.1:6379"}))
    assert device_for(unknown).memory_bytes is None


def test_gpu_memory_on_a_group_without_gpus_is_refused() -> None:
    group = {"name": "cpu", "cpus": 8, "memory": "32Gi", "gpu_memory_gib": 24}
    with pytest.raises(UserError, match="gpu_memory_gib: 24, but the group has no GPUs"):
        validate_spec(minimal_spec(cluster={"node_groups": [group]}))


def small_gpu_sweep(batch_sizes: list[int]) -> dict:
    groups = [{"name": "gpu", "cpus": 8, "memory": "64Gi", "gpus": 1, "gpu_memory_gib": 2}]
    return minimal_spec(
        cluster={"address": "10.0.0.1:6379", "node_groups": groups},
        scaling={"use_gpu": True},
        data={"train": {"path": "x.tsv"}, "max_length": 512},
        sweep={"space": {"train.micro_batch_size": {"choice": batch_sizes}}},
    )


def test_a_point_that_cannot_fit_is_refused_before_launch_with_its_numbers() -> None:
    spec = validate_spec(small_gpu_sweep([4, 1024]))
    with pytest.raises(UserError) as info:
        _check_space(spec, 1000)
    [line] = info.value.problems
    assert line.startswith('sweep.space."train.micro_batch_size" value 1024: needs ')
    assert "GiB per worker (weights " in line and "activations " in line
    assert "but the device has 2.0 GiB (cluster.node_groups 'gpu': 2 GiB per GPU)" in line
    assert "lower train.micro_batch_size" in line
    assert _check_space(validate_spec(small_gpu_sweep([4, 8])), 1000).max_t >= 1


def test_memory_problem_is_none_where_memory_is_unknown() -> None:
    spec = validate_spec(small_gpu_sweep([1024]) | {"cluster": {"address": "10.0.0.1:6379"}})
    assert device_for(spec).memory_bytes is None
    assert memory_problem(spec) is None


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_no_example_spec_or_sweep_corner_is_refused_here(path: Path) -> None:
    spec = load_spec(path, [])
    if spec.stages is not None:
        specs = [spec.stage_spec(i) for i in range(len(spec.stages))]
    else:
        specs = [spec] + [point for _, point in sweep_points(spec)]
    for one in specs:
        assert memory_problem(one) is None


def test_estimate_command_prints_the_table_and_json() -> None:
    runner = CliRunner()
    spec = str(EXPERIMENTS / "quickstart.yaml")
    result = runner.invoke(app, ["estimate", spec])
    assert result.exit_code == 0, result.output
    for row in ("parameters", "trainable", "optimizer state", "activations", "fits", "step time"):
        assert row in result.output
    assert "largest point: " in result.output and "peft.r=16" in result.output
    result = runner.invoke(app, ["estimate", spec, "--json", "--set", "peft.method=none"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["parameters"]["trainable"] == out["parameters"]["total"]
    assert out["fits"] is True
    parts = ("weights", "gradients", "optimizer", "activations", "buffers")
    memory_bytes = out["memory_bytes"]
    assert memory_bytes["total"] == sum(memory_bytes[k] for k in parts)


def test_estimate_command_with_a_bad_set_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(minimal_spec()))
    result = CliRunner().invoke(app, ["estimate", str(path), "--set", "train.epochs=zero"])
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.startswith("error: ")] == [
        "error: --set train.epochs=zero: train.epochs: Input should be a valid integer, "
        "unable to parse string as an integer (got 'zero')"
    ]
