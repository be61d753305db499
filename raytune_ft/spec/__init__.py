"""The experiment spec: typed sections, loading with overrides, derived values."""

from raytune_ft.spec.experiment import ExperimentSpec, Schedule
from raytune_ft.spec.loading import apply_overrides, load_spec, validate_spec

__all__ = ["ExperimentSpec", "Schedule", "apply_overrides", "load_spec", "validate_spec"]
