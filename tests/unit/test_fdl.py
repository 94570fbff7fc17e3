"""The FDL reader (pure): what OSCAR accepts is accepted and normalized, deprecated keys warn, typos refuse."""

from __future__ import annotations

import pytest

from provisioner.errors import FdlInvalid
from provisioner.workflow.dataflow import dataflow
from provisioner.workflow.fdl import parse_fdl

# In the style of the multi-cluster examples of OSCAR's repository: an edge cluster that forwards to a cloud one
# through the old service-level ``replicas``, SCAR's ``Variables``, numbers where OSCAR wants text, CRLF line ends
# and a tab after a value.
REPO_STYLE = (
    "functions:\r\n"
    "  oscar:\r\n"
    "  - oscar-edge:\r\n"
    "      name: smoke-detect\r\n"
    "      cpu: 1.0\r\n"
    "      memory: 1Gi\r\n"
    "      image: ghcr.io/example/smoke:latest\t\r\n"
    "      script: script.sh\r\n"
    "      log_level: debug\r\n"
    "      replicas:\r\n"
    "      - type: oscar\r\n"
    "        cluster_id: oscar-cloud\r\n"
    "        service_name: smoke-detect\r\n"
    "      rescheduler_threshold: 20\r\n"
    "      input:\r\n"
    "      - storage_provider: minio\r\n"
    "        path: smoke/input\r\n"
    "      output:\r\n"
    "      - storage_provider: minio.oscar-cloud\r\n"
    "        path: smoke/output\r\n"
    "      environment:\r\n"
    "        Variables:\r\n"
    "          NOTIFY: false\r\n"
    "          RETRIES: 3\r\n"
    "  - oscar-cloud:\r\n"
    "      name: smoke-detect\r\n"
    "      image: ghcr.io/example/smoke:latest\r\n"
    "      script: script.sh\r\n"
    "      input:\r\n"
    "      - storage_provider: minio\r\n"
    "        path: smoke/output\r\n"
    "      output:\r\n"
    "      - storage_provider: minio\r\n"
    "        path: smoke/result\r\n"
    "        suffix: [png, jpg]\r\n"
    "clusters:\r\n"
    "  oscar-cloud:\r\n"
    "    endpoint: https://oscar.cloud.example.org\r\n"
    "    auth_user: oscar\r\n"
    "    auth_password: cloud-password-1\r\n"
    "    ssl_verify: true\r\n"
    "    memory: 256Mi\r\n"
)


def test_repository_style_file_is_accepted_and_normalized() -> None:
    fdl = parse_fdl(REPO_STYLE, "smoke.yaml")
    edge, cloud = fdl.stages
    assert edge.cluster == "oscar-edge" and edge.name == "smoke-detect"
    assert edge.definition["cpu"] == "1.0"
    assert edge.definition["image"] == "ghcr.io/example/smoke:latest"
    assert edge.definition["log_level"] == "DEBUG"
    assert edge.definition["environment"] == {"variables": {"NOTIFY": "false", "RETRIES": "3"}}
    assert edge.definition["federation"] == {
        "members": [{"type": "oscar", "cluster_id": "oscar-cloud", "service_name": "smoke-detect"}],
        "rescheduler_threshold": 20,
        "topology": "star",
    }
    assert "replicas" not in edge.definition and "rescheduler_threshold" not in edge.definition
    assert edge.script == "script.sh" and "script" not in edge.definition
    assert cloud.outputs[0].suffix == ("png", "jpg")
    assert fdl.clusters["oscar-cloud"]["endpoint"] == "https://oscar.cloud.example.org"
    warned = [w.render("smoke.yaml") for w in fdl.warnings]
    assert warned == [
        "smoke.yaml:10: functions.oscar[0].oscar-edge.replicas: deprecated: write it as federation.members "
        "(OSCAR v4.1 reads it there)",
        "smoke.yaml:14: functions.oscar[0].oscar-edge.rescheduler_threshold: deprecated: write it as "
        "federation.rescheduler_threshold (OSCAR v4.1 reads it there)",
        "smoke.yaml:42: clusters.oscar-cloud.memory: unknown key, ignored by OSCAR (left out)",
    ]
    assert "cloud-password-1" in fdl.secrets()


def test_dataflow_of_the_repository_style_file() -> None:
    flow = dataflow(parse_fdl(REPO_STYLE, "smoke.yaml"))
    edge, cloud = ("oscar-edge", "smoke-detect"), ("oscar-cloud", "smoke-detect")
    assert [(e.source, e.target, e.store, e.path) for e in flow.edges] == [
        (edge, cloud, ("minio", "oscar-cloud"), "smoke/output")
    ]
    assert flow.entries == (edge,)
    assert flow.finals == ((cloud, 0),)
    assert flow.order == (cloud, edge)  # downstream first: its bucket exists before the edge writes into it


def test_own_minio_of_two_clusters_are_different_stores() -> None:
    text = """
functions:
  oscar:
  - a: {name: one, image: x, output: [{storage_provider: minio, path: data/out}]}
  - b: {name: two, image: x, input: [{storage_provider: minio, path: data/out}]}
"""
    flow = dataflow(parse_fdl(text, "f.yaml"))
    assert flow.edges == ()
    assert set(flow.entries) == {("a", "one"), ("b", "two")}


@pytest.mark.parametrize(
    ("out", "inp", "connected"),
    [
        ("path: data/in", "path: data/in", True),
        ("path: data/in/sub", "path: data/in", True),  # written under what the input watches
        ("path: data/input", "path: data/in", False),  # a prefix of the name is not a folder
        ("path: data", "path: data/in", False),
        ("{path: data/in, suffix: [jpg]}", "{path: data/in, suffix: [png]}", False),
        ("{path: data/in, suffix: [jpg, png]}", "{path: data/in, suffix: [png]}", True),
    ],
)
def test_which_output_feeds_which_input(out: str, inp: str, connected: bool) -> None:
    def io(spec: str) -> str:
        body = spec[1:-1] if spec.startswith("{") else spec
        return "{storage_provider: minio, " + body + "}"

    text = f"""
functions:
  oscar:
  - c: {{name: one, image: x, output: [{io(out)}]}}
  - c: {{name: two, image: x, input: [{io(inp)}]}}
"""
    flow = dataflow(parse_fdl(text, "f.yaml"))
    assert bool(flow.edges) is connected


def test_three_stages_over_two_clusters_deploy_downstream_first() -> None:
    text = """
functions:
  oscar:
  - edge: {name: a, image: x, input: [{storage_provider: minio, path: inbox/a}],
           output: [{storage_provider: minio.cloud, path: middle/b}]}
  - cloud: {name: b, image: x, input: [{storage_provider: minio, path: middle/b}],
            output: [{storage_provider: minio, path: middle/c}]}
  - cloud: {name: c, image: x, input: [{storage_provider: minio, path: middle/c}],
            output: [{storage_provider: minio, path: outbox/c}]}
"""
    flow = dataflow(parse_fdl(text, "f.yaml"))
    assert flow.order == (("cloud", "c"), ("cloud", "b"), ("edge", "a"))
    assert flow.entries == (("edge", "a"),)
    assert flow.finals == ((("cloud", "c"), 0),)


def test_known_clusters_resolve_minio_references() -> None:
    text = "functions:\n  oscar:\n  - a: {name: one, image: x, output: [{storage_provider: minio.lab, path: dir/o}]}\n"
    with pytest.raises(FdlInvalid):
        parse_fdl(text, "f.yaml")
    assert parse_fdl(text, "f.yaml", known_clusters=frozenset({"lab"})).stages[0].outputs[0].ref == "lab"


def test_typo_of_a_required_key_is_reported_once() -> None:
    text = "functions:\n  oscar:\n  - a: {name: one, imag: x}\n"
    with pytest.raises(FdlInvalid) as raised:
        parse_fdl(text, "f.yaml")
    assert raised.value.problems == ["f.yaml:3: functions.oscar[0].a.imag: unknown key; did you mean image?"]


def test_every_problem_is_reported_in_line_order() -> None:
    text = "functions:\n  oscar:\n  - a: {name: Bad, image: x}\n  - b: {name: ok, image: x, memory: lots}\n"
    with pytest.raises(FdlInvalid) as raised:
        parse_fdl(text, "f.yaml")
    assert [p.split(":")[1] for p in raised.value.problems] == ["3", "4"]


def test_token_and_cluster_id_are_left_to_oscar_with_a_warning() -> None:
    text = "functions:\n  oscar:\n  - a: {name: one, image: x, token: abc, cluster_id: other}\n"
    fdl = parse_fdl(text, "f.yaml")
    assert "token" not in fdl.stages[0].definition and "cluster_id" not in fdl.stages[0].definition
    assert [w.field for w in fdl.warnings] == ["functions.oscar[0].a.cluster_id", "functions.oscar[0].a.token"]


def test_secrets_of_the_file_are_listed_for_masking() -> None:
    text = """
functions:
  oscar:
  - a: {name: one, image: x, environment: {secrets: {API_KEY: s3cr3t-value}}}
storage_providers:
  minio: {other: {endpoint: 'https://m.example.org', access_key: AK-1, secret_key: SK-1}}
  webdav: {dav: {hostname: h, login: l, password: dav-pass}}
"""
    assert set(parse_fdl(text, "f.yaml").secrets()) == {"s3cr3t-value", "AK-1", "SK-1", "dav-pass"}
