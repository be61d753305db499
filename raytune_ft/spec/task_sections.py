"""The `task:` section: one model per task type, selected by `type` (a discriminated union).

Each task names the columns it reads and the validation metrics it reports (with the
direction that is better), so the spec can check `train.metric` before anything runs.
"""

from __future__ import annotations

import string
from typing import Annotated, ClassVar, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from raytune_ft.spec.sections import Section


class GenerationSpec(Section):
    """Greedy generation on the first validation rows at every evaluation."""

    samples: int = Field(32, ge=1, le=100000, description="Validation rows generated for.")
    max_new_tokens: int = Field(32, ge=1, le=32768)


class _TaskBase(Section):
    # metric -> "max" | "min": what train.metric may name for this task, and its direction.
    METRICS: ClassVar[dict[str, str]] = {"eval_loss": "min"}
    DEFAULT_METRIC: ClassVar[str] = "eval_loss"

    @property
    def input_columns(self) -> list[str]:
        """Columns every row must have."""
        raise NotImplementedError

    @property
    def metrics(self) -> dict[str, str]:
        return dict(self.METRICS)


class _TextAndLabel(_TaskBase):
    """A text column in, a target column out (the sequence-head tasks)."""

    text_column: str = Field("text", min_length=1)
    label_column: str = Field("label", min_length=1)

    @property
    def input_columns(self) -> list[str]:
        return [self.text_column, self.label_column]

    @model_validator(mode="after")
    def _two_columns(self) -> _TextAndLabel:
        if self.text_column == self.label_column:
            raise ValueError(
                f"text_column and label_column are both {self.text_column!r}; expected two columns"
            )
        return self


class ClassificationTask(_TextAndLabel):
    """Single-label sequence classification: one class per row, softmax + cross-entropy."""

    type: Literal["classification"] = "classification"
    labels: list[str] | None = Field(
        None, min_length=2, description="Classes in index order; null: sorted distinct values."
    )
    METRICS: ClassVar[dict[str, str]] = {
        "eval_accuracy": "max",
        "eval_f1": "max",
        "eval_loss": "min",
    }
    DEFAULT_METRIC: ClassVar[str] = "eval_accuracy"


class MultiLabelTask(ClassificationTask):
    """Several classes per row (a list, or one string joined by label_separator);
    sigmoid + binary cross-entropy per class."""

    type: Literal["multi-label"] = "multi-label"  # type: ignore[assignment]
    label_column: str = Field("labels", min_length=1)
    label_separator: str = Field(
        ",", min_length=1, description="Splits a string cell (csv/tsv) into labels."
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="Sigmoid output that means 'has it'.")
    METRICS: ClassVar[dict[str, str]] = {
        "eval_micro_f1": "max",
        "eval_macro_f1": "max",
        "eval_subset_accuracy": "max",
        "eval_loss": "min",
    }
    DEFAULT_METRIC: ClassVar[str] = "eval_micro_f1"


class RegressionTask(_TextAndLabel):
    """One float target per row; a single output trained with mean squared error."""

    type: Literal["regression"] = "regression"
    METRICS: ClassVar[dict[str, str]] = {
        "eval_mse": "min",
        "eval_mae": "min",
        "eval_r2": "max",
        "eval_spearman": "max",
        "eval_loss": "min",
    }
    DEFAULT_METRIC: ClassVar[str] = "eval_mse"


_LM_METRICS = {"eval_loss": "min", "eval_perplexity": "min", "eval_token_accuracy": "max"}


def template_fields(template: str) -> list[str]:
    """The `{column}` names a template uses (a ValueError names a malformed one)."""
    names = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field or any(c in field for c in ".[]"):
            raise ValueError(f"{{{field}}}: expected a column name between braces")
        if spec or conversion:
            raise ValueError(f"{{{field}}}: format specs and conversions are not supported")
        names.append(field)
    return names


def _checked_template(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        fields = template_fields(value)
    except ValueError as exc:
        raise ValueError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
    if not fields:
        raise ValueError("names no {column}; expected at least one column between braces")
    return value


class SftTask(_TaskBase):
    """Causal-LM supervised finetuning: loss on response tokens only.

    Either a prompt and a response template over the row's columns, or a column of chat
    messages rendered with the tokenizer's chat template (loss on assistant turns).
    """

    type: Literal["causal-lm-sft"] = "causal-lm-sft"
    prompt_template: str | None = Field(
        None, description="e.g. 'Question: {question}\\nAnswer: '; {column} is a row's value."
    )
    response_template: str | None = Field(None, description="e.g. '{answer}'.")
    messages_column: str | None = Field(
        None, description="A column of [{role, content}, ...] lists (instead of templates)."
    )
    add_eos: bool = Field(True, description="End each response with the EOS token.")
    truncation_side: Literal["left", "right"] = Field(
        "left",
        description="left: cut the start of the prompt; right: cut the end of the response.",
    )
    packing: bool = Field(
        False, description="Pack training examples into full max_length rows (exact masking)."
    )
    generation: GenerationSpec | None = Field(
        None, description="Greedy generation on validation rows: eval_exact_match."
    )

    _templates = field_validator("prompt_template", "response_template")(
        lambda value: _checked_template(value)
    )

    @model_validator(mode="after")
    def _one_source(self) -> SftTask:
        templates = (self.prompt_template, self.response_template)
        if self.messages_column is not None and any(t is not None for t in templates):
            raise ValueError(
                "set either messages_column or prompt_template + response_template, not both"
            )
        if self.messages_column is None and None in templates:
            raise ValueError(
                "expected prompt_template and response_template (or a messages_column)"
            )
        return self

    @property
    def input_columns(self) -> list[str]:
        if self.messages_column is not None:
            return [self.messages_column]
        assert self.prompt_template is not None and self.response_template is not None
        names = template_fields(self.prompt_template) + template_fields(self.response_template)
        return list(dict.fromkeys(names))

    @property
    def metrics(self) -> dict[str, str]:
        extra = {"eval_exact_match": "max"} if self.generation else {}
        return _LM_METRICS | extra


class CausalLmTask(_TaskBase):
    """Continued pretraining on raw text: documents joined with EOS, cut into max_length rows."""

    type: Literal["causal-lm"] = "causal-lm"
    text_column: str = Field("text", min_length=1)
    METRICS: ClassVar[dict[str, str]] = _LM_METRICS

    @property
    def input_columns(self) -> list[str]:
        return [self.text_column]


class Seq2SeqTask(_TaskBase):
    """Encoder-decoder (T5/BART style): generate the target column from the source column."""

    type: Literal["seq2seq"] = "seq2seq"
    source_column: str = Field("source", min_length=1)
    target_column: str = Field("target", min_length=1)
    source_prefix: str = Field("", description="Prepended to every source, e.g. 'summarize: '.")
    max_target_length: int = Field(128, ge=1, le=131072, description="Target tokens, truncated.")
    generation: GenerationSpec | None = Field(
        GenerationSpec(), description="Greedy generation: ROUGE-L, BLEU, chrF, exact match."
    )

    @property
    def input_columns(self) -> list[str]:
        return [self.source_column, self.target_column]

    @property
    def metrics(self) -> dict[str, str]:
        extra = (
            {
                "eval_rougeL": "max",
                "eval_bleu": "max",
                "eval_chrf": "max",
                "eval_exact_match": "max",
            }
            if self.generation
            else {}
        )
        return _LM_METRICS | extra

    @model_validator(mode="after")
    def _two_columns(self) -> Seq2SeqTask:
        if self.source_column == self.target_column:
            raise ValueError(f"source_column and target_column are both {self.source_column!r}")
        return self


class MaskedLmTask(_TaskBase):
    """Masked-LM continued pretraining (BERT style): predict randomly masked tokens."""

    type: Literal["masked-lm"] = "masked-lm"
    text_column: str = Field("text", min_length=1)
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="Share of tokens masked.")
    METRICS: ClassVar[dict[str, str]] = _LM_METRICS

    @property
    def input_columns(self) -> list[str]:
        return [self.text_column]


TASK_SECTIONS: tuple[type[_TaskBase], ...] = (
    ClassificationTask,
    MultiLabelTask,
    RegressionTask,
    SftTask,
    CausalLmTask,
    Seq2SeqTask,
    MaskedLmTask,
)
_TYPES = [section.model_fields["type"].default for section in TASK_SECTIONS]


def _task_type(value: object) -> object:
    # A task section without `type` is a classification task (the walking skeleton's only one).
    if isinstance(value, dict):
        return value.get("type", "classification")
    return getattr(value, "type", None)


TaskSpec = Annotated[
    Annotated[ClassificationTask, Tag("classification")]
    | Annotated[MultiLabelTask, Tag("multi-label")]
    | Annotated[RegressionTask, Tag("regression")]
    | Annotated[SftTask, Tag("causal-lm-sft")]
    | Annotated[CausalLmTask, Tag("causal-lm")]
    | Annotated[Seq2SeqTask, Tag("seq2seq")]
    | Annotated[MaskedLmTask, Tag("masked-lm")],
    Discriminator(
        _task_type,
        custom_error_type="task_type",
        custom_error_message="type: expected one of " + ", ".join(_TYPES),
    ),
]
