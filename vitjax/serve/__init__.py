"""The HTTP prediction service: `vitjax serve --model DIR` (FastAPI + uvicorn).

`backends` runs a model folder (JAX) or an export folder (ONNX Runtime, StableHLO) on uint8 batches;
`batching` groups concurrent requests into fixed-size batches; `limits` holds the service's bounds;
`app` is the FastAPI application (`/predict`, `/health`, `/metadata`, and `/`, the page of `page`);
`cli` parses the flags and runs uvicorn.
"""
