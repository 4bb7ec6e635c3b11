"""The OpenAI-compatible server backend: client, lm-eval model, bench route."""
