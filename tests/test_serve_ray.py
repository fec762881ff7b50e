"""Ray Serve: the service as a deployment of two replicas on a local one-node Ray cluster (slow; CI
runs it in its own step after the suite, with ray installed: see .ci/run)."""
import socket

import pytest

from deploy_helpers import LABELS, hf_model_folder, png_bytes

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_serve_deployment_with_two_replicas(tmp_path):
    import httpx
    import numpy as np
    from fastapi.testclient import TestClient
    from ray import serve

    from vitjax.serve.app import Limits, create_app
    from vitjax.serve.backends import open_backend
    from vitjax.serve.ray_serve import deployment

    folder = hf_model_folder(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(deployment(folder, Limits(max_batch=4), num_replicas=2, cpus_per_replica=0.5), route_prefix="/")
        status = serve.status().applications["default"].deployments["vitjax"]
        assert status.replica_states.get("RUNNING") == 2
        responses = [httpx.post(f"http://127.0.0.1:{port}/predict?top_k=2",
                                files=[("files", ("a.png", png_bytes()))], timeout=120) for _ in range(4)]
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        assert responses[0].json()["predictions"][0]["label"] in LABELS.values()
        # Every replica answers what `vitjax serve` (the same app in one process) answers.
        with TestClient(create_app(open_backend(folder), Limits(max_batch=4))) as client:
            expected = client.post("/predict?top_k=2", files=[("files", ("a.png", png_bytes()))]).json()
        for response in responses:
            got = response.json()["predictions"][0]
            want = expected["predictions"][0]
            assert [p["label"] for p in got["top_k"]] == [p["label"] for p in want["top_k"]]
            np.testing.assert_allclose([p["probability"] for p in got["top_k"]],
                                       [p["probability"] for p in want["top_k"]], rtol=1e-5)
        assert httpx.post(f"http://127.0.0.1:{port}/predict", content=b"x",
                          headers={"content-type": "text/plain"}, timeout=60).status_code == 415
    finally:
        serve.shutdown()
        ray.shutdown()
