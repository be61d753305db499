"""raytune-ft: finetune Hugging Face models on Ray Train, sweep them on Ray Tune."""

__version__ = "0.1.0"
