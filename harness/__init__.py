"""llama-bench-harness: re-measure Llama-family benchmark claims on quantized GGUF weights."""

__version__ = "0.1.0"
