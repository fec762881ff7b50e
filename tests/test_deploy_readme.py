"""The "Deploy and serve" page's commands (docs/deploy.md), run as written (a tiny model stands in for
runs/digits/best): export, quantize, serve with a real uvicorn process on 127.0.0.1, the curl example, then SIGTERM
while a request is in flight: the request is answered and the server exits cleanly."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from deploy_helpers import LABELS, hf_model_folder, png_bytes
from doc_blocks import code_blocks


def _deploy_commands() -> list[str]:
    return [command for block in code_blocks("docs/deploy.md", "bash") for command in block.commands]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, process, seconds: float = 240) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise TimeoutError("the server did not come up")


def test_readme_deploy_commands(tmp_path):
    commands = _deploy_commands()
    assert [c.split()[:3] for c in commands] == [["python", "-m", "vitjax.main"]] * 2 + [
        ["vitjax", "serve", "--model"], ["curl", "-F", "files=@digit.png"]]
    hf_model_folder(tmp_path / "runs" / "digits")  # runs/digits/best
    (tmp_path / "digit.png").write_bytes(png_bytes())
    port = _free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = lambda command, **kw: subprocess.run(command.replace("python ", f"{sys.executable} ", 1).replace(
        "8000", str(port)), shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, **kw)
    for command in commands[:2]:
        done = run(command)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs/digits/onnx/model.onnx").is_file()
    assert (tmp_path / "runs/digits/onnx-int8/deploy.json").is_file()

    # A long batching wait keeps a request in flight when SIGTERM arrives.
    server = subprocess.Popen(f"exec {commands[2].replace('8000', str(port))} --max_wait_ms 3000", shell=True,
                              cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server)
        curl = run(commands[3])
        assert curl.returncode == 0 and '"top_k"' in curl.stdout, curl.stdout + curl.stderr
        assert any(f'"label":"{label}"' in curl.stdout for label in LABELS.values())

        answers = []
        request = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{url}/predict", files=[("files", ("late.png", png_bytes()))], timeout=60)))
        request.start()
        time.sleep(1.0)
        server.send_signal(signal.SIGTERM)
        request.join(60)
        assert answers and answers[0].status_code == 200, answers
        assert answers[0].json()["predictions"][0]["image"] == "late.png"
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells it.
        assert server.wait(60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_serve_refuses_a_folder_that_holds_no_model(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vitjax.serve", "--model", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "is not a model folder" in done.stderr and "Traceback" not in done.stderr
