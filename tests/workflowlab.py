"""What the workflow tests share: two stand-in OSCAR clusters ("edge", "cloud"), each over a moto S3 server of
its own as its MinIO, and a three-stage FDL over them (edge reverses, cloud upper-cases, cloud tags)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from standin.oscar import MinioAccess, StandInOscar, moto_server

CLOUD_ACCESS_KEY = "cloud-access-key"
REVERSE = 'rev "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"\n'
TAG = '{ cat "$INPUT_FILE_PATH"; echo "[$STAGE]"; } > "$TMP_OUTPUT_DIR/out.txt"\n'


@contextlib.contextmanager
def two_clusters(
    edge_password: str,
    cloud_password: str,
    cloud_secret: str = "minio-secret",  # noqa: S107 - moto takes any credentials
    *,
    cls: type[StandInOscar] = StandInOscar,
    edge: Mapping[str, Any] | None = None,
    cloud: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Started clusters {"edge": ..., "cloud": ...} (``edge``/``cloud``: more arguments for each), stopped after."""
    with moto_server() as edge_s3, moto_server() as cloud_s3:
        made = {
            "edge": cls(password=edge_password, minio=MinioAccess(edge_s3), name="edge", **dict(edge or {})),
            "cloud": cls(
                password=cloud_password,
                minio=MinioAccess(cloud_s3, access_key=CLOUD_ACCESS_KEY, secret_key=cloud_secret),
                name="cloud",
                **dict(cloud or {}),
            ),
        }
        for oscar in made.values():
            oscar.start()
        try:
            yield made
        finally:
            for oscar in made.values():
                oscar.stop()


def write_chain(
    path: Path,
    clusters: Mapping[str, StandInOscar],
    *,
    edge_auth: str,
    cloud_auth: str,
    prefix: str = "",
    upper: str = "tr a-z A-Z",
    tag: bool = True,
    tag_script: str = TAG,
) -> Path:
    """The FDL at ``path`` (scripts beside it): ``{prefix}reverse`` on edge reads ``{prefix}faces/in`` and writes
    the cloud's ``{prefix}masks/in``; ``{prefix}upper`` on cloud writes ``{prefix}tagging/in`` (``tag``: else
    ``{prefix}results/out``), where ``{prefix}tag`` reads and writes ``{prefix}results/out``.
    ``edge_auth``/``cloud_auth``: the rest of each ``clusters:`` entry (``auth_password: PW``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "reverse.sh").write_text(REVERSE)
    (path.parent / "upper.sh").write_text(
        f'{upper} < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"\n'
    )
    (path.parent / "tag.sh").write_text(tag_script)
    p = prefix
    tag_stage = f"""
  - cloud:
      name: {p}tag
      image: alpine
      script: tag.sh
      environment: {{Variables: {{STAGE: three}}}}
      input: [{{storage_provider: minio, path: {p}tagging/in}}]
      output: [{{storage_provider: minio, path: {p}results/out}}]
"""
    path.write_text(
        f"""functions:
  oscar:
  - edge:
      name: {p}reverse
      image: alpine
      script: reverse.sh
      input: [{{storage_provider: minio, path: {p}faces/in}}]
      output: [{{storage_provider: minio.cloud, path: {p}masks/in}}]
  - cloud:
      name: {p}upper
      image: alpine
      script: upper.sh
      memory: 512Mi
      input: [{{storage_provider: minio, path: {p}masks/in}}]
      output: [{{storage_provider: minio, path: {p}{"tagging/in" if tag else "results/out"}}}]
{tag_stage if tag else ""}
clusters:
  edge: {{endpoint: '{clusters["edge"].url}', {edge_auth}}}
  cloud: {{endpoint: '{clusters["cloud"].url}', {cloud_auth}}}
"""
    )
    return path
