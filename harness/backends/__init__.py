"""Where the model runs: in-process llama.cpp or an OpenAI-compatible server."""
