"""Ray Serve: the service as a deployment of two replicas on a local one-node Ray cluster (slow)."""
import socket

import pytest

from deploy_helpers import LABELS, hf_model_folder, png_bytes

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_serve_deployment_with_two_replicas(tmp_path):
    import httpx
    from ray import serve

    from vitjax.serve.app import Limits
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
        response = httpx.post(f"http://127.0.0.1:{port}/predict?top_k=2",
                              files=[("files", ("a.png", png_bytes()))], timeout=120)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["label"] in LABELS.values()
        assert httpx.post(f"http://127.0.0.1:{port}/predict", content=b"x",
                          headers={"content-type": "text/plain"}, timeout=60).status_code == 415
    finally:
        serve.shutdown()
        ray.shutdown()
