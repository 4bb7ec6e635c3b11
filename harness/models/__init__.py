"""Model weights: the catalogue, verified downloads, GGUF checks, chat formats."""
