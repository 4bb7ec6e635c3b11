"""The in-process llama.cpp backend: engine, lm-eval model, devices, RPC, speed probe."""
