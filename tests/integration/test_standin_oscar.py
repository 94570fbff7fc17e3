"""The stand-in OSCAR (standin/oscar.py) behaves as OSCAR does where the workflow tests lean on it.

Two stand-in clusters, each with its own MinIO (a moto S3 server in a process of its own on loopback): a service
on the edge writes into the cloud's MinIO with the credentials given in its storage_providers, the cloud's
service picks the object up; each job runs the service's script with INPUT_FILE_PATH and TMP_OUTPUT_DIR.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.aws.s3 import S3Access, S3Store
from provisioner.errors import OSCARAuthRefused, OSCARError
from provisioner.oscar.client import OscarClient
from standin.oscar import MinioAccess, StandInOscar, moto_server

PASSWORD = "stand-in-password-1"


@pytest.fixture(scope="module")
def clusters() -> Iterator[dict[str, StandInOscar]]:
    with moto_server() as edge_s3, moto_server() as cloud_s3:
        edge = StandInOscar(password=PASSWORD, minio=MinioAccess(edge_s3), name="edge", page_size=2).start()
        cloud = StandInOscar(password=PASSWORD, minio=MinioAccess(cloud_s3), name="cloud").start()
        try:
            yield {"edge": edge, "cloud": cloud}
        finally:
            edge.stop()
            cloud.stop()


def _s3(oscar: StandInOscar) -> S3Store:
    return S3Store(S3Access(oscar.minio.endpoint, oscar.minio.access_key, oscar.minio.secret_key))


def _wait(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_file_goes_through_two_clusters(clusters: dict[str, StandInOscar], tmp_path: Path) -> None:
    edge, cloud = clusters["edge"], clusters["cloud"]
    cloud_minio = cloud.config()["minio_provider"]
    with OscarClient(cloud.url, password=PASSWORD) as client:
        client.create_service(
            {
                "name": "upper",
                "image": "alpine",
                "script": 'tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"\n',
                "input": [{"storage_provider": "minio", "path": "mid/in"}],
                "output": [{"storage_provider": "minio", "path": "final/out"}],
            }
        )
    with OscarClient(edge.url, password=PASSWORD) as client:
        client.create_service(
            {
                "name": "reverse",
                "image": "alpine",
                "script": 'rev "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"\n',
                "environment": {"variables": {"MODE": "x"}},
                "input": [{"storage_provider": "minio", "path": "start/in"}],
                "output": [{"storage_provider": "minio.cloud", "path": "mid/in"}],
                "storage_providers": {"minio": {"cloud": {k: cloud_minio[k] for k in cloud_minio}}},
            }
        )
        assert client.get_service("reverse")["token"]
    source = tmp_path / "note.txt"
    source.write_text("hello\n")
    _s3(edge).upload(source, "start", "in/note.txt")
    _wait(lambda: [o for o in _s3(cloud).objects("final", "out")])
    got = tmp_path / "got.txt"
    _s3(cloud).download("final", "out/note.txt", got)
    assert got.read_text() == "OLLEH\n"
    with OscarClient(edge.url, password=PASSWORD) as client:
        jobs = _wait(lambda: {k: v for k, v in client.service_logs("reverse").items() if v["status"] == "Succeeded"})
        assert len(jobs) == 1 and {"creation_time", "start_time", "finish_time"} <= set(next(iter(jobs.values())))


def test_unknown_fields_and_bad_credentials_are_refused(clusters: dict[str, StandInOscar]) -> None:
    edge = clusters["edge"]
    with OscarClient(edge.url, password=PASSWORD) as client, pytest.raises(OSCARError) as refused:
        client.create_service({"name": "x1", "image": "alpine", "script": "true", "replicas": []})
    assert refused.value.status == 400 and "replicas" in str(refused.value)
    with OscarClient(edge.url, password=PASSWORD) as client, pytest.raises(OSCARError) as refused:
        client.create_service({"name": "x2", "image": "alpine", "script": "true", "environment": {"Variables": {}}})
    assert refused.value.status == 400
    with OscarClient(edge.url, password="wrong-password") as client, pytest.raises(OSCARAuthRefused):
        client.services()


def test_jobs_are_listed_page_by_page(clusters: dict[str, StandInOscar], tmp_path: Path) -> None:
    edge = clusters["edge"]
    with OscarClient(edge.url, password=PASSWORD) as client:
        client.create_service(
            {
                "name": "count",
                "image": "alpine",
                "script": "true\n",
                "input": [{"storage_provider": "minio", "path": "count/in"}],
            }
        )
        for index in range(5):
            path = tmp_path / f"f{index}"
            path.write_text(str(index))
            _s3(edge).upload(path, "count", f"in/f{index}")
        _wait(lambda: len(edge.jobs["count"]) == 5)
        assert len(client.service_logs("count")) == 5  # the stand-in answers 2 jobs a page, next_page to go on
        pages = [p for m, p in edge.requests if p == "/system/logs/count"]
        assert len(pages) >= 3
