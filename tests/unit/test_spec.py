from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, minimal_spec
from typer.testing import CliRunner

from raytune_ft.cli import app
from raytune_ft.errors import UserError
from raytune_ft.spec import ExperimentSpec, load_spec, validate_spec

runner = CliRunner()


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_example_spec_validates() -> None:
    examples = sorted((ROOT / "experiments").glob("*.yaml"))
    assert examples, "experiments/ has no example specs"
    for path in examples:
        spec = load_spec(path)
        assert Path(spec.data.train.path).is_absolute()


def test_defaults_fill_in_and_paths_resolve_against_spec_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nmodel: {name_or_path: m}\ndata: {train: {path: d/*.tsv}}\n")
    spec = load_spec(path)
    assert spec.data.train.path == str(tmp_path / "d" / "*.tsv")
    assert spec.train.epochs == 3 and spec.deepspeed.zero_stage == 2
    assert spec.storage.path == "runs"  # outputs stay relative to where you run


def test_derived_values() -> None:
    spec = validate_spec(
        minimal_spec(
            train={
                "micro_batch_size": 8,
                "gradient_accumulation_steps": 4,
                "epochs": 2,
                "warmup_ratio": 0.1,
                "eval_every": 7,
            },
            scaling={"num_workers": 2},
        )
    )
    assert spec.global_batch_size == 64
    sched = spec.schedule(1000)  # 500 per worker -> 63 micro-batches -> 15 steps per epoch
    assert (sched.steps_per_epoch, sched.total_steps, sched.warmup_steps) == (15, 30, 3)
    assert sched.eval_every_steps == 7 and sched.num_evaluations == 5
    capped = validate_spec(minimal_spec(train={"max_steps": 4, "epochs": 9})).schedule(1000)
    assert capped.total_steps == 4


def test_overrides_are_coerced_to_the_field_type(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_dump(minimal_spec()))
    spec = load_spec(
        path,
        [
            "train.learning_rate=1e-4",
            "train.epochs=2",
            "peft.method=lora",
            "scaling.use_gpu=false",
            "train.eval_every=50",
            "peft.target_modules=[query, value]",
        ],
    )
    assert spec.train.learning_rate == pytest.approx(1e-4)
    assert spec.train.epochs == 2 and spec.peft.method == "lora"
    assert spec.scaling.use_gpu is False and spec.train.eval_every == 50
    assert spec.peft.target_modules == ["query", "value"]


def test_resolved_spec_round_trips(tmp_path: Path) -> None:
    spec = load_spec(ROOT / "experiments" / "quickstart.yaml")
    again = ExperimentSpec.model_validate(json.loads(spec.model_dump_json()))
    assert again == spec


MALFORMED = [
    # (yaml text, overrides, expected fragment of the one error line)
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\nbogus: 1\n",
        [],
        ":4: bogus: unknown field",
    ),
    (
        "name: t\nmodel: {name_or_path: m, tsk: x}\ndata: {train: {path: x}}\n",
        [],
        ":2: model.tsk: unknown field",
    ),
    ("name: t\ndata: {train: {path: x}}\n", [], "model: required field is missing"),
    ("name: t\nmodel: {name_or_path: m}\n", [], "data: required field is missing"),
    ("name: Bad_Name\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n", [], ":1: name:"),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\ntrain: {learning_rate: -1}\n",
        [],
        ":4: train.learning_rate: Input should be greater than 0",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\ntrain: {epochs: many}\n",
        [],
        "train.epochs: Input should be a valid integer",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\ntrain: {eval_every: 0}\n",
        [],
        "train.eval_every: expected 'epoch' or a number of steps >= 1",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\ntrain: {precision: fp8}\n",
        [],
        "train.precision: Input should be 'auto', 'fp32', 'bf16' or 'fp16'",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\ndeepspeed: {zero_stage: 4}\n",
        [],
        "deepspeed.zero_stage: Input should be less than or equal to 3",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\ndeepspeed: {zero_stage: 2, offload_params: cpu}\n",
        [],
        "deepspeed: offload_params needs zero_stage 3",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}, split: {validation: 0.5, test: 0.5}}\n",
        [],
        "data.split: validation + test = 1",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x, format: xml}}\n",
        [],
        "data.train.format: Input should be 'auto', 'tsv', 'csv', 'jsonl', 'json', 'parquet' "
        "or 'text' (got 'xml')",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\nscaling: {num_workers: 0}\n",
        [],
        "scaling.num_workers: Input should be greater than or equal to 1",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\nsweep: {space: {train.learning_rate: {loguniform: [1.0e-3, 1.0e-5]}}}\n",
        [],
        'sweep.space."train.learning_rate".loguniform: loguniform [0.001, 1e-05]: expected 0 < low < high',
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\nsweep: {space: {train.learning_rate: {normal: [0, 1]}}}\n",
        [],
        'sweep.space."train.learning_rate": expected one of',
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\nsweep: {space: {train.nope: {choice: [1]}}}\n",
        [],
        "sweep.space.\"train.nope\": no spec field 'nope' there",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\nsweep: {space: {}}\n",
        [],
        "sweep.space: Dictionary should have at least 1 item",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\ntrain: {metric: accuracy}\n",
        [],
        "spec.yaml:4: train.metric: 'accuracy' is not reported by task 'classification'; "
        "expected one of eval_accuracy, eval_f1, eval_loss",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\ntask: {type: causal-lm}\n"
        "train: {metric: eval_accuracy}\n",
        [],
        "train.metric: 'eval_accuracy' is not reported by task 'causal-lm'; expected one of "
        "eval_loss, eval_perplexity, eval_token_accuracy",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\ntask: {type: gpt}\n",
        [],
        "task: type: expected one of classification, multi-label, regression, causal-lm-sft",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n"
        "task: {type: causal-lm-sft, messages_column: m, prompt_template: '{q}'}\n",
        [],
        "task: set either messages_column or prompt_template + response_template, not both",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n"
        "task: {type: causal-lm-sft, prompt_template: 'Q: {q.x}', response_template: '{a}'}\n",
        [],
        "task.prompt_template: {q.x}: expected a column name between braces",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n"
        "task: {type: masked-lm, mlm_probability: 1.5}\n",
        [],
        "task.mlm_probability: Input should be less than 1",
    ),
    (
        "name: t\nmodel: {name_or_path: m, init: random}\ndata: {train: {path: x}}\n"
        "peft: {method: lora}\n",
        [],
        "peft.method: an adapter over a randomly initialised model trains on frozen random",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n"
        "stages: [{name: a, task: {type: masked-lm}}, {name: b, task: {type: regression}, "
        "train: {metric: eval_f1}}]\n",
        [],
        "stages.1 (b): train.metric: 'eval_f1' is not reported by task 'regression'",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n"
        "stages: [{name: a, task: {type: masked-lm}}]\n",
        [],
        "stages: List should have at least 2 items",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n"
        "stages: [{name: a, task: {type: masked-lm}}, {name: b, task: {type: regression}}]\n",
        ["storage.path=s3://b/runs"],
        "stages: a chain needs a local or shared storage.path",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n",
        ["cluster.runtime_env.env_vars={HF_TOKEN: x}"],
        "cluster.runtime_env.env_vars: HF_TOKEN: looks like a secret; expected it in the cluster's own",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n",
        ["train.micro_batch_size=lots"],
        "--set train.micro_batch_size=lots: train.micro_batch_size",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n",
        ["train.typo=1"],
        "--set train.typo=1: train.typo: unknown field",
    ),
    (
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n",
        ["no-equals-sign"],
        "--set 'no-equals-sign': expected KEY=VALUE",
    ),
    ("", [], "the file is empty"),
    ("- just\n- a list\n", [], "top level is a list; expected a mapping"),
    ("name: t\nmodel: {name_or_path: m\n", [], "not valid YAML"),
    ("name: t\n  bad: indent\n", [], ":2:"),
]


@pytest.mark.parametrize(("text", "overrides", "expected"), MALFORMED)
def test_malformed_specs_exit_2_naming_the_field(
    tmp_path: Path, text: str, overrides: list[str], expected: str
) -> None:
    path = write(tmp_path, text)
    args = ["validate", str(path)] + [a for o in overrides for a in ("--set", o)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert any(expected in line for line in lines), result.output


def test_missing_spec_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "no such spec file" in result.output


def test_several_problems_give_one_line_each(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n"
        "train: {learning_rate: 0, epochs: 0}\ndeepspeed: {zero_stage: 9}\n",
    )
    with pytest.raises(UserError) as info:
        load_spec(path)
    assert len(info.value.problems) == 3
    assert all(line.startswith(f"{path}:") for line in info.value.problems)


def test_schema_command_prints_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["additionalProperties"] is False
    assert {"model", "data", "train", "sweep"} <= set(schema["properties"])


def test_validate_prints_resolved_spec(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["validate", str(ROOT / "experiments" / "quickstart.yaml"), "--set", "train.epochs=4"]
    )
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["train"]["epochs"] == 4
    assert printed["deepspeed"]["zero_stage"] == 2


def test_override_into_a_value_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "name: t\nmodel: {name_or_path: m}\ndata: {train: {path: x}}\n")
    with pytest.raises(UserError) as info:
        load_spec(path, ["name.first=x"])
    assert info.value.problems == ["--set name.first: 'name' is a value, not a section"]


@pytest.mark.parametrize(
    ("address", "host_port"),
    [
        ("local", None),
        ("auto", None),
        ("head:6379", ("head", 6379)),
        ("ray://my_head", ("my_head", 10001)),  # Ray Client's default port
        ("ray://10.0.0.1:10001", ("10.0.0.1", 10001)),
        ("[::1]:6379", ("::1", 6379)),
    ],
)
def test_cluster_addresses_ray_accepts(address: str, host_port: object) -> None:
    from raytune_ft.spec.sections import ClusterSpec

    assert ClusterSpec(address=address).host_port == host_port


@pytest.mark.parametrize("address", ["http://head:8265", "head", "ray://", "head:port"])
def test_cluster_addresses_ray_refuses(address: str) -> None:
    with pytest.raises(UserError, match=r"cluster\.address: .*expected 'local', 'auto', HOST:PORT"):
        validate_spec(minimal_spec(cluster={"address": address}))
