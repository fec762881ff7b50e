"""`vitjax serve` as users run it: real uvicorn processes on 127.0.0.1, tried as a careless user and a
careful attacker would (issue 21, items 5-9), and its page driven by a real browser (issue 23).

Two servers cover the cases: `keyed`, a classifier behind an API key file with a 2 s body timeout
and a 3-image limit; `segmenter`, a segmentation model with small pixel limits and a batching wait
that keeps requests in flight. The start-up checks run the command line alone. The browser test
drives Debian's headless Chromium (`chromium`, `chromium-driver`) with selenium; it skips where they
are missing, except under CI (`CI=true`, as .ci/run, which installs them), where it fails. Its
screenshots are kept under $VITJAX_TEST_ARTIFACTS (default: <tmp>/vitjax-test-artifacts).
"""
import base64
import concurrent.futures
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from browser_helpers import ARTIFACTS, browser as _browser
from deploy_helpers import LABELS, free_port, hf_model_folder, native_model_folder, png_bytes, wait_healthy

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SEGMENTATION = ({"name": "segmentation", "plugins": [], "upsample_steps": 1, "head_channels": 8},
                ["background", "disc", "square"])


class Server:
    """`python -m vitjax.serve --model MODEL FLAGS` on a free port; its log goes to a file."""

    def __init__(self, folder: Path, model: str, *flags: str, env: dict | None = None):
        self.port, self.log = free_port(), folder / "server.log"
        self.url = f"http://127.0.0.1:{self.port}"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "vitjax.serve", "--model", model,
                                             "--port", str(self.port), *flags],
                                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        wait_healthy(self.url, self.process, output=self.log.read_text)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as f:
            return int(next(line for line in f if line.startswith("VmRSS")).split()[1]) / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    root = tmp_path_factory.mktemp("keyed")
    model = hf_model_folder(root, "vit")
    (root / "key.txt").write_text(KEY + "\n")
    server = Server(root, model, "--api_key_file", str(root / "key.txt"), "--max_images", "3",
                    "--body_timeout_s", "2", "--max_batch", "4")
    server.model = model
    yield server
    server.stop()


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmenter")
    model = native_model_folder(root, *SEGMENTATION)
    # 4 Mpx images: one fits a request, two are over it; two requests fit in flight, three do not.
    server = Server(root, model, "--max_pixels", "5000000", "--max_request_pixels", "7000000",
                    "--max_pixels_in_flight", "10000000", "--max_wait_ms", "1500", "--max_batch", "2")
    yield server
    server.stop()


def _flat_png(side: int, seed: int = 0) -> bytes:
    """A large image in few bytes (a colour field with a few blocks): decoding it is what costs."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(0, 256, 3)))
    for _ in range(8):
        x, y = (int(v) for v in rng.integers(0, side - side // 4, 2))
        image.paste(tuple(int(v) for v in rng.integers(0, 256, 3)), (x, y, x + side // 4, y + side // 4))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# ---- item 5: memory ------------------------------------------------------------------------------

def test_pixels_are_bounded_per_request_and_in_flight(segmenter):
    big = _flat_png(2000)  # 4 Mpx in ~20 KB
    post = lambda files: httpx.post(f"{segmenter.url}/predict", files=files, timeout=120)
    two = post([("files", (f"{i}.png", big)) for i in range(2)])
    assert two.status_code == 413 and "8000000 pixels in all" in two.json()["detail"], two.text
    assert "--max_request_pixels" in two.json()["detail"]

    # Three at once: two fit in flight (each waits 1.5 s for batch company), the third is told to retry.
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda i: post([("files", (f"{i}.png", big))]), range(3)))
    assert sorted(a.status_code for a in answers) == [200, 200, 503], [a.text[:200] for a in answers]
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "--max_pixels_in_flight" in busy.json()["detail"]



def test_memory_goes_back_to_the_os_after_bursts_of_large_images(keyed):
    """Bursts of three requests of three 5.8 Mpx images each: the server returns to about its size
    before them (without handing freed memory back it kept ~170 MB more after the second burst, and
    grew with the image sizes: ~1 GB after bursts of 16 Mpx images)."""
    post = lambda files: httpx.post(f"{keyed.url}/predict", files=files, headers=AUTH, timeout=120)
    assert post([("files", ("small.png", png_bytes()))]).status_code == 200
    before, after = keyed.rss_mb(), []
    for burst in range(3):
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            done = list(pool.map(lambda i: post([("files", (f"{burst}_{i}_{j}.png", _flat_png(2400, 3 * i + j)))
                                                 for j in range(3)]), range(3)))
        assert [d.status_code for d in done] == [200] * 3, [d.text[:200] for d in done]
        after.append(keyed.rss_mb())
    assert max(after) < before + 100, (before, after)


# ---- item 6: a body that never arrives -------------------------------------------------------------

def _stalled_upload(server: Server) -> socket.socket:
    """A request that declares 1000 bytes of body and sends 10."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    s.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
              f"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode() + b'{"images":')
    return s


def test_a_stalled_upload_is_answered_408_after_the_body_timeout(keyed):
    with _stalled_upload(keyed) as s:
        start = time.time()
        reply = b"".join(iter(lambda: s.recv(4096), b""))  # until the server closes the connection
        waited = time.time() - start
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert b"--body_timeout_s" in reply and 1.5 < waited < 10, waited


# ---- item 7: client errors are 4xx ----------------------------------------------------------------

def test_every_client_error_is_a_4xx(keyed, segmenter):
    png = base64.b64encode(png_bytes()).decode()
    raw = lambda body: httpx.post(f"{keyed.url}/predict", content=body, timeout=60,
                                  headers={**AUTH, "content-type": "application/json"})
    cases = [
        (raw(b'{"images": ["%s"], "top_k": 1e400}' % png.encode()), 422, "top_k=inf"),
        (raw(b"[" * 100_000), 400, "nested too deeply"),
        (raw(json.dumps({"images": [png], "top_k": 2.9}).encode()), 422, "top_k=2.9 is not an integer"),
        (raw(json.dumps({"images": [png], "top_k": True}).encode()), 422, "top_k=True is not an integer"),
        (raw(json.dumps({"images": png}).encode()), 400, "not a list"),
        (httpx.post(f"{keyed.url}/predict?top_k=2.0", headers=AUTH, files=[("files", ("a.png", png_bytes()))]),
         422, "top_k='2.0' is not an integer"),
    ]
    for response, status, message in cases:
        assert response.status_code == status and message in response.json()["detail"], response.text
    ok = raw(json.dumps({"images": [png], "top_k": 2}).encode())
    assert ok.status_code == 200 and len(ok.json()["predictions"][0]["top_k"]) == 2

    # A segmentation model writes files per image: never under the client's file name.
    names = ["nul\x00byte.png", "x" * 300 + ".png", "../../escape.png"]
    parts = [b'--B\r\nContent-Disposition: form-data; name="files"; filename="%s"\r\nContent-Type: image/png\r\n\r\n'
             % name.encode() + png_bytes(seed=i) + b"\r\n" for i, name in enumerate(names)]  # the NUL as is
    response = httpx.post(f"{segmenter.url}/predict", timeout=60, content=b"".join(parts) + b"--B--\r\n",
                          headers={"content-type": "multipart/form-data; boundary=B"})
    assert response.status_code == 200, response.text
    records = response.json()["predictions"]
    assert [r["image"] for r in records] == names
    assert all(Image.open(io.BytesIO(base64.b64decode(r["mask"]))).size == (30, 40) for r in records)


# ---- item 8: start-up values ----------------------------------------------------------------------

def test_bad_start_up_values_are_refused_at_start(keyed, tmp_path):
    """Each command exits 2 with one line naming the flag (the old service started with them)."""
    absent = str(tmp_path / "absent")
    runs = {
        "port": (["--model", keyed.model, "--port", "70000"], {}, "--port: 70000 is not a TCP port"),
        "batch": (["--model", keyed.model, "--max_batch", "0"], {}, "--max_batch 0: give a number of at least 1"),
        "images": (["--model", keyed.model, "--max_images", "-1"], {}, "--max_images -1"),
        "key": (["--model", keyed.model, "--api_key", KEY], {}, "--api_key_file"),
        "host": (["--model", absent, "--host", "0.0.0.0"], {},
                 "warning: --host 0.0.0.0 listens beyond this machine and no API key is set"),
        "empty key": (["--model", absent], {"VITJAX_API_KEY": ""},
                      "warning: $VITJAX_API_KEY is set but empty: the service runs WITHOUT an API key"),
    }
    processes = {name: subprocess.Popen([sys.executable, "-m", "vitjax.serve", *argv], env={**os.environ, **env},
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name, (argv, env, _) in runs.items()}
    try:
        for name, (_, _, message) in runs.items():
            _, stderr = processes[name].communicate(timeout=120)
            assert processes[name].returncode == 2 and message in stderr, (name, stderr)
            assert "Traceback" not in stderr and KEY not in stderr, stderr
    finally:
        for process in processes.values():
            process.kill()
    shown = subprocess.run([sys.executable, "-m", "vitjax.serve", "--help"], capture_output=True, text=True)
    assert "(default: 32)" in shown.stdout and "(default: 127.0.0.1)" in shown.stdout


# ---- item 9: exposure ----------------------------------------------------------------------------

def test_the_key_guards_every_path_but_health_and_the_page(keyed):
    get = lambda path, headers=None: httpx.get(f"{keyed.url}{path}", headers=headers or {}, timeout=30)
    for path in ("/metadata", "/docs", "/openapi.json"):
        assert get(path).status_code == 401, path
        assert get(path, {"Authorization": "Bearer wrong"}).status_code == 401, path
        assert get(path, AUTH).status_code == 200, path
    assert get("/health").status_code == 200 and "<html" in get("/").text
    metadata = get("/metadata", {"authorization": f"bearer {KEY}"})  # RFC 7235: the scheme in any case
    assert metadata.status_code == 200 and metadata.json()["server"]["api_key"] is True
    assert keyed.model not in metadata.text and str(Path(keyed.model).parent) not in metadata.text
    assert KEY not in metadata.text

    # One file limit, one answer (the form parser's own 400 for more than max_images + 1 is gone).
    for count in (4, 10):
        files = [("files", (f"{i}.png", png_bytes())) for i in range(count)]
        response = httpx.post(f"{keyed.url}/predict", headers=AUTH, files=files, timeout=60)
        assert response.status_code == 413, response.text
        assert "over the server's limit of 3 (--max_images)" in response.json()["detail"]


# ---- issue 23: the page, in a real browser ---------------------------------------------------------

def _upload(driver, url: str, image: Path, key: str | None = None, top_k: int = 3):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    if key:
        driver.find_element(By.ID, "key").send_keys(key)
    top = driver.find_element(By.ID, "topk")
    top.clear()
    top.send_keys(str(top_k))
    driver.find_element(By.ID, "files").send_keys(str(image))
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .card")
                                    or "error" in d.find_element(By.ID, "status").get_attribute("class"))
    return By


def test_the_page_shows_labels_and_mask_legends_in_a_browser(keyed, segmenter, tmp_path, capsys):
    driver = _browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    image = tmp_path / "fruit.png"
    image.write_bytes(png_bytes(120, 90, seed=3))
    try:
        # Without the key the page says what is missing; with it, the top-k bars carry the API's labels.
        By = _upload(driver, keyed.url, image)
        assert "API key" in driver.find_element(By.ID, "status").text
        By = _upload(driver, keyed.url, image, key=KEY)
        api = httpx.post(f"{keyed.url}/predict?top_k=3", headers=AUTH,
                         files=[("files", ("fruit.png", image.read_bytes()))]).json()["predictions"][0]
        rows = driver.find_elements(By.CSS_SELECTOR, "#results .card .row")
        shown = [(r.find_element(By.CLASS_NAME, "label").text, r.find_element(By.CLASS_NAME, "num").text) for r in rows]
        assert shown == [(e["label"], f"{100 * e['probability']:.1f}%") for e in api["top_k"]], shown
        assert {label for label, _ in shown} <= set(LABELS.values())
        assert driver.find_element(By.CSS_SELECTOR, ".card h2").text == "fruit.png"
        assert "task: classification" in driver.find_element(By.ID, "model").text
        # Nothing but the server was asked for, and the key is in no URL or storage.
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources and all(r.startswith(keyed.url) for r in resources), resources
        assert KEY not in " ".join(resources) + driver.execute_script(
            "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
        classification = ARTIFACTS / "serve_page_classification.png"
        driver.save_screenshot(str(classification))
        # A detection record (the task's own shape, made up here: no detection model runs) gets its boxes drawn.
        drawn = driver.execute_async_script("""
            const done = arguments[arguments.length - 1], source = document.createElement("canvas");
            source.width = 90; source.height = 120;
            source.toBlob(async (blob) => {
              const record = {image: "boxes.png", detections: [{label: "apple", score: 0.9, box: [10, 10, 60, 80]}],
                              drawn: "..."};
              const node = await card(record, new File([blob], "boxes.png", {type: "image/png"}));
              const pixel = node.querySelector("canvas").getContext("2d").getImageData(10, 40, 1, 1).data;
              done([node.querySelector(".detections .label").textContent, Array.from(pixel)]);
            });""")
        assert drawn[0] == "apple" and drawn[1][3] == 255 and sum(drawn[1][:3]) > 0, drawn  # the box's left edge

        # A segmentation model: the overlay on the image and a legend naming the classes in its mask.
        By = _upload(driver, segmenter.url, image)
        api = httpx.post(f"{segmenter.url}/predict", files=[("files", ("fruit.png", image.read_bytes()))]).json()
        legend = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".legend .label")]
        assert sorted(legend) == sorted(api["predictions"][0]["class_pixels"]), legend
        canvas = "return document.querySelector('.card canvas').toDataURL()"
        tinted = driver.execute_script(canvas)
        driver.find_element(By.CSS_SELECTOR, ".legend-entry").click()  # the largest class: shown untinted
        assert len(driver.find_elements(By.CSS_SELECTOR, ".legend-entry.off")) == 1
        assert driver.execute_script(canvas) != tinted
        segmentation = ARTIFACTS / "serve_page_segmentation.png"
        driver.save_screenshot(str(segmentation))
    finally:
        driver.quit()
        shutil.rmtree(driver.profile, ignore_errors=True)
    with capsys.disabled():
        print(f"\nscreenshots of the service page: {classification} {segmentation}")


# ---- last: shutdown with an upload stalled (stops the keyed server) ---------------------------------

def test_sigterm_with_a_stalled_upload_exits_promptly_without_a_traceback(keyed):
    """The upload still arriving is answered 503 at once (not after its 2 s body timeout, nor after
    uvicorn's 30 s graceful wait with a 500 and a traceback, as before)."""
    with _stalled_upload(keyed) as s:
        time.sleep(0.5)
        start = time.time()
        keyed.process.send_signal(signal.SIGTERM)
        reply = b"".join(iter(lambda: s.recv(4096), b""))
        answered = time.time() - start
        code = keyed.process.wait(20)
    assert reply.startswith(b"HTTP/1.1 503") and b"shutting down" in reply and answered < 1.5, (reply, answered)
    assert code in (0, -signal.SIGTERM) and time.time() - start < 8
    log = keyed.log.read_text()
    assert "Traceback" not in log and "Application shutdown complete" in log, log
