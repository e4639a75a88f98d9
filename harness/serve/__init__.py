"""OpenAI-compatible serving of a base and its adapters (`harness serve`), and the endpoint backend
that evaluates any OpenAI-compatible server (`harness run --endpoint`)."""
