"""launch/k8s/: the manifests, rendered by the commands docs/scale-out.md and their own headers give, are
valid Kubernetes objects (kubernetes-validate: the API's published OpenAPI schema, strict, so a misspelled
field fails), and vitjax's start-up reads the jax.distributed environment they set as intended. No cluster
is involved: applying them to one is not tested here."""
from __future__ import annotations

import copy
import re
import shlex
import subprocess
import sys

import jax
import kubernetes_validate
import pytest
import yaml

from doc_blocks import REPO, code_blocks
from vitjax import parallel
from vitjax.config import base_config

K8S = "1.31"  # the oldest Kubernetes with podFailurePolicy and DisruptionTarget generally available
RENDER = "python launch/k8s/render.py"
MANIFESTS = ["launch/k8s/gpu-job.yaml", "launch/k8s/tpu-job.yaml"]


def _render_commands() -> list[str]:
    """Every render command of docs/scale-out.md and of the manifests' headers (`| kubectl ...` cut off)."""
    commands = [c for b in code_blocks("docs/scale-out.md", "bash") for c in b.commands if c.startswith(RENDER)]
    for manifest in MANIFESTS:
        header = "".join(line[1:].lstrip() if line.startswith("#") else ""
                         for line in (REPO / manifest).read_text().splitlines(keepends=True))
        commands += [re.sub(r"\\\n\s*", "", m) for m in re.findall(rf"{RENDER}.*?(?<!\\)\n", header, re.S)]
    return [c.split("|")[0].strip() for c in commands]


def _rendered(command: str) -> tuple[str, list[dict]]:
    out = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return shlex.split(command)[2], list(yaml.safe_load_all(out.stdout))


def check(docs: list[dict]) -> dict[str, str]:
    """Validates `docs` (a Service and an indexed Job) and returns the JAX environment of the Job's pods;
    AssertionError or kubernetes_validate.ValidationError on a fault."""
    for doc in docs:
        kubernetes_validate.validate(doc, K8S, strict=True)
    service, job = docs
    assert (service["kind"], job["kind"]) == ("Service", "Job")
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    # The API server requires an image (the schema does not).
    assert all(c.get("image") for c in pod["containers"]), "a container without an image"
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    # Pod i of an indexed Job is <job>-i.<subdomain> in the headless Service's DNS.
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    assert pod["subdomain"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"job-name": job["metadata"]["name"]}
    assert env["JAX_COORDINATOR_ADDRESS"].split(":")[0] == f"{job['metadata']['name']}-0.{pod['subdomain']}"
    assert env["JAX_NUM_PROCESSES"] == str(spec["completions"])
    assert env["JAX_PROCESS_ID"] == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    # The SIGTERM save gets the time SLURM gives it (launch/slurm.sbatch's --signal=TERM@seconds).
    slurm = re.search(r"--signal=TERM@(\d+)", (REPO / "launch/slurm.sbatch").read_text()).group(1)
    assert pod["terminationGracePeriodSeconds"] == int(slurm)
    # One error brings every process down once: a Job-wide backoffLimit would be spent by a single one.
    assert "backoffLimit" not in spec and spec["backoffLimitPerIndex"] > 0 and spec["maxFailedIndexes"] == 0
    rules = spec["podFailurePolicy"]["rules"]
    assert {"operator": "In", "values": [143]} in [r.get("onExitCodes") for r in rules if r["action"] == "Ignore"]
    return env


def test_the_documented_commands_render_valid_manifests(monkeypatch):
    commands = _render_commands()
    rendered = dict(_rendered(c) for c in commands)
    assert len(commands) == 4 and sorted(rendered) == MANIFESTS  # twice each: the docs page, the header
    for manifest, docs in rendered.items():
        env = check(docs)
        # vitjax's start-up turns that environment into jax.distributed's arguments (pod 2 of 4).
        calls = []
        monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
        monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
        for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES"):
            monkeypatch.setenv(name, env[name])
        monkeypatch.setenv("JAX_PROCESS_ID", "2")
        parallel.initialize_distributed(base_config().distributed)
        assert calls == [dict(coordinator_address="beans-0.beans:12355", num_processes=4, process_id=2)], manifest


def _misspelled(docs):
    pod = docs[1]["spec"]["template"]["spec"]
    pod["terminationGracePeriodSecond"] = pod.pop("terminationGracePeriodSeconds")


def _no_image(docs):
    del docs[1]["spec"]["template"]["spec"]["containers"][0]["image"]


def _text_count(docs):
    docs[1]["spec"]["completions"] = "four"


def _other_coordinator(docs):
    docs[1]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "beans-1.beans:12355"


@pytest.mark.parametrize("fault", [_misspelled, _no_image, _text_count, _other_coordinator])
def test_a_broken_manifest_fails_the_check(fault):
    _, docs = _rendered(_render_commands()[0])
    check(copy.deepcopy(docs))
    fault(docs)
    with pytest.raises((AssertionError, kubernetes_validate.ValidationError)):
        check(docs)


def test_a_missing_or_unknown_placeholder_is_named():
    out = subprocess.run([sys.executable, "launch/k8s/render.py", "launch/k8s/gpu-job.yaml", "NAME=beans",
                          "IMAGES=x"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert "missing: CONFIG, GPUS_PER_HOST, HOSTS, IMAGE, WORKDIR_CLAIM; unknown: IMAGES" in out.stderr
