"""The same service as a Ray Serve deployment (the optional extra `serve-ray`), for more than one
machine: each replica builds the FastAPI app of `vitjax.serve.app` (batching, limits, API key) around
its own backend, and Ray's HTTP proxy spreads requests over `num_replicas` replicas.

    from ray import serve
    from vitjax.serve.ray_serve import deployment
    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(deployment("runs/digits/onnx", num_replicas=2), route_prefix="/")
"""
from __future__ import annotations

from vitjax.serve.limits import Limits


def deployment(model: str, limits: Limits = Limits(), num_replicas: int = 1, cpus_per_replica: float = 1.0):
    """A bound Ray Serve application serving the model or export folder `model` (see vitjax.serve.cli)."""
    from ray import serve

    @serve.ingress()
    class VitjaxService:
        def __init__(self, model: str, limits: Limits):
            self.model, self.limits = model, limits

        def __serve_build_asgi_app__(self):
            from vitjax.serve.app import create_app
            from vitjax.serve.backends import open_backend
            return create_app(open_backend(self.model), self.limits)

    options = dict(num_replicas=num_replicas, ray_actor_options={"num_cpus": cpus_per_replica})
    return serve.deployment(VitjaxService, name="vitjax", **options).bind(model, limits)
