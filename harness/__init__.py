"""harness: evaluation and benchmarking of parameter-efficient fine-tuning adapters."""

__version__ = "0.1.0"
