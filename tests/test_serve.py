"""The prediction service in-process (FastAPI's TestClient): answers match vitjax's own predictor,
concurrent requests share fixed-size batches with no compile after warm-up, bad input is a 4xx that
names the problem and the server stays up, the API key guards /predict, and a `--workers` process
builds the same app."""
import base64
import concurrent.futures
import dataclasses
import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from deploy_helpers import LABELS, hf_model_folder, png_bytes
from vitjax.api import load_pretrained
from vitjax.serve.app import INLINE_PIXELS, Limits, create_app
from vitjax.serve.backends import JaxBackend


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return hf_model_folder(tmp_path_factory.mktemp("serve"), "vit")


@pytest.fixture(scope="module")
def backend(model_dir):
    return JaxBackend(model_dir)


def test_predictions_match_the_classifier(model_dir, backend):
    pngs = [png_bytes(40, 30, seed=i) for i in range(3)]
    expected = load_pretrained(model_dir).predict([Image.open(io.BytesIO(b)) for b in pngs], top_k=2)
    with TestClient(create_app(backend)) as client:
        multipart = client.post("/predict?top_k=2", files=[("files", (f"{i}.png", b)) for i, b in enumerate(pngs)])
        as_json = client.post("/predict", json={"images": [base64.b64encode(b).decode() for b in pngs], "top_k": 2})
        metadata = client.get("/metadata").json()
        assert client.get("/health").json() == {"status": "ok"}
    for response in (multipart, as_json):
        assert response.status_code == 200, response.text
        for record, top in zip(response.json()["predictions"], expected):
            assert [(e["label"], pytest.approx(e["probability"], abs=1e-5)) for e in record["top_k"]] == top
    assert [r["image"] for r in multipart.json()["predictions"]] == ["0.png", "1.png", "2.png"]
    assert metadata["class_names"] == list(LABELS.values()) and metadata["task"] == "classification"
    assert len(metadata["model_sha256"]) == 64 and metadata["preprocessing"]["size"] == {"height": 32, "width": 32}


def test_a_large_image_is_decoded_in_the_thread_pool_with_the_same_answer(model_dir, backend):
    large = png_bytes(300, 260, seed=7)  # over INLINE_PIXELS: decoded off the event loop
    assert 300 * 260 > INLINE_PIXELS
    expected = load_pretrained(model_dir).predict([Image.open(io.BytesIO(large))], top_k=2)[0]
    with TestClient(create_app(backend)) as client:
        record = client.post("/predict?top_k=2", files=[("files", ("large.png", large))]).json()["predictions"][0]
    assert [(e["label"], pytest.approx(e["probability"], abs=1e-5)) for e in record["top_k"]] == expected


def test_concurrent_requests_batch_without_recompiling(backend):
    app = create_app(backend, Limits(max_batch=4, max_wait_ms=50))
    with TestClient(app) as client:
        warm = backend.compiled_sizes()  # warm-up compiled the buckets 1, 2 and 4 (if not yet)
        assert warm >= 3
        sizes = [1, 3, 2, 5, 1, 4, 2, 1]  # 5 images: more than one batch

        def post(i):
            files = [("files", (f"{i}_{j}.png", png_bytes(20 + i, 24, seed=10 * i + j))) for j in range(sizes[i])]
            return client.post("/predict?top_k=1", files=files).json()["predictions"]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            together = list(pool.map(post, range(len(sizes))))
        alone = [post(i) for i in range(len(sizes))]
        assert backend.compiled_sizes() == warm
    assert [len(r) for r in together] == sizes
    for batched, single in zip(together, alone):
        for a, b in zip(batched, single):
            assert a["label"] == b["label"] and a["probability"] == pytest.approx(b["probability"], abs=1e-6)


def test_bad_requests_are_4xx_naming_the_problem_and_the_server_stays_up(backend):
    limits = Limits(max_request_bytes=50_000, max_images=3, max_pixels=100 * 100, api_key="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    big = io.BytesIO()
    Image.new("RGB", (101, 100)).save(big, "PNG")
    cases = [
        ({"files": [("files", ("a.png", png_bytes()))]}, {}, 401, "API key"),
        ({"files": [("files", ("a.png", png_bytes()))]}, {"Authorization": "Bearer nope"}, 401, "API key"),
        ({"files": [("files", ("notes.txt", b"hello"))]}, auth, 400, "'notes.txt' is not an image"),
        ({"files": [("files", ("empty.png", b""))]}, auth, 400, "'empty.png' is empty"),
        ({"files": [("files", ("big.png", big.getvalue()))]}, auth, 413, "10100 pixels"),
        ({"files": [("files", (f"{i}.png", png_bytes())) for i in range(4)]}, auth, 413, "over the server's limit of 3 (--max_images)"),
        ({"files": [("files", ("huge.png", b"x" * 60_000))]}, auth, 413, "limit of 50000"),
        ({"files": [("files", ("a.png", png_bytes()))], "params": {"top_k": 0}}, auth, 422, "top_k=0"),
        ({"files": [("files", ("a.png", png_bytes()))], "params": {"top_k": "two"}}, auth, 422, "not an integer"),
        ({"json": {"images": ["not base64!"]}}, auth, 400, "base64"),
        ({"json": {"pictures": []}}, auth, 400, '"images"'),
        ({"json": {"images": []}}, auth, 400, "no images"),
        ({"content": b"abc", "headers": {"content-type": "text/plain"}}, auth, 415, "multipart/form-data"),
    ]
    with TestClient(create_app(backend, limits)) as client:
        for kwargs, headers, status, message in cases:
            response = client.post("/predict", headers={**headers, **kwargs.pop("headers", {})}, **kwargs)
            assert response.status_code == status, (message, response.text)
            assert message in response.json()["detail"], response.text
        ok = client.post("/predict", headers=auth, files=[("files", ("a.png", png_bytes()))])
        assert ok.status_code == 200 and ok.json()["predictions"][0]["label"] in LABELS.values()
        assert client.get("/metadata").status_code == 401  # the key guards it too
        assert client.get("/metadata", headers=auth).json()["server"]["api_key"] is True  # never the key itself


def test_each_worker_process_builds_the_app_from_the_command_line(model_dir, monkeypatch):
    """`vitjax serve --workers N`: uvicorn calls cli.worker_app in each process; it serves the same
    model under the same limits."""
    from vitjax.serve import cli

    monkeypatch.setenv(cli._WORKER_ENV, json.dumps({"model": model_dir, "threads": 1,
                                                    "limits": dataclasses.asdict(Limits(max_batch=2, max_images=1))}))
    with TestClient(cli.worker_app()) as client:
        ok = client.post("/predict", files=[("files", ("a.png", png_bytes()))])
        too_many = client.post("/predict", files=[("files", (f"{i}.png", png_bytes())) for i in range(2)])
        assert client.get("/metadata").json()["server"]["batch_sizes"] == [1, 2]
    assert ok.status_code == 200 and ok.json()["predictions"][0]["label"] in LABELS.values()
    assert too_many.status_code == 413
