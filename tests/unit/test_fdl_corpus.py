"""A corpus of bad FDL files: each must exit 2 and print, among its lines, exactly the line given here.

``provision workflow validate`` runs in this process (offline: no IM, no OSCAR); every line on stderr is an
``error: FILE:LINE: field: rule`` line (or a warning or hint), nothing is printed on stdout, and the state
directory is left as it was (no database created by looking).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clihelper import CLI

BASE = """\
functions:
  oscar:
  - edge:
      name: blur-faces
      image: ghcr.io/grycap/blurry-faces
      script: blur.sh
      memory: 1Gi
      cpu: '1.0'
      input:
      - storage_provider: minio
        path: faces/in
      output:
      - storage_provider: minio.cloud
        path: masks/in
  - cloud:
      name: mask-detector
      image: ghcr.io/grycap/mask-detector
      script: detect.sh
      input:
      - storage_provider: minio
        path: masks/in
      output:
      - storage_provider: minio
        path: masks/out
"""
SVC = "functions.oscar[0].edge"
SVC1 = "functions.oscar[1].cloud"
DNS = (
    "must be a DNS-1123 label of at most 39 characters (lowercase letters, digits and '-', "
    "starting and ending with a letter or digit)"
)


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    line: str  # the line that must be printed after "error: " ("{f}" is the FDL's path, "{d}" its directory)


def edit(old: str, new: str, base: str = BASE) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


def add(after: str, lines: str) -> str:
    """``lines`` inserted after the first line that is ``after`` (stripped)."""
    out = []
    done = False
    for line in BASE.splitlines(keepends=True):
        out.append(line)
        if not done and line.strip() == after:
            out.append(lines)
            done = True
    assert done, after
    return "".join(out)


LAMBDA = """\
  aws:
  - lambda:
      name: scar-fn
      container: {image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/fn:1}
      input: [{storage_provider: s3.aws1, path: scar-in/in}]
      output: [{storage_provider: minio.cloud, path: results/out}]
      memory: 1024
    iam: {role: 'arn:aws:iam::123456789012:role/scar'}
storage_providers:
  s3:
    aws1: {region: us-east-1}
"""
CYCLE = """\
functions:
  oscar:
  - edge:
      name: first
      image: alpine
      input: [{storage_provider: minio, path: one/in}]
      output: [{storage_provider: minio, path: two/in}]
  - edge:
      name: second
      image: alpine
      input: [{storage_provider: minio, path: two/in}]
      output: [{storage_provider: minio, path: one/in/again}]
"""

CASES = [
    # --- the file itself ---
    Case(
        "not-yaml",
        "functions:\n  oscar: [\n",
        "{f}:3: (file): not valid YAML (expected the node content, but found '<stream end>')",
    ),
    Case("top-is-a-list", "- a\n- b\n", "{f}:1: (top): an FDL must be a mapping with functions:, got a list"),
    Case("empty-file", "", "{f}:1: (top): functions is required"),
    Case("no-functions", "clusters: {}\n", "{f}:1: (top): functions is required"),
    Case("top-typo", edit("functions:", "functons:"), "{f}:1: functons: unknown key; did you mean functions?"),
    Case(
        "key-twice",
        edit("      memory: 1Gi\n", "      memory: 1Gi\n      memory: 2Gi\n"),
        f"{{f}}:8: {SVC}.memory: given twice in one mapping",
    ),
    # --- functions ---
    Case(
        "functions-a-list", "functions: [a]\n", "{f}:1: functions: must be a mapping with oscar: (and aws:), got a list"
    ),
    Case(
        "oscar-not-a-list",
        "functions:\n  oscar: {edge: {}}\n",
        "{f}:2: functions.oscar: must be a list of {CLUSTER_ID: service} entries, got a mapping",
    ),
    Case("oscar-missing", "functions:\n  osccar: []\n", "{f}:2: functions.osccar: unknown key; did you mean oscar?"),
    Case(
        "entry-two-clusters",
        "functions:\n  oscar:\n  - edge: {name: a, image: b}\n    cloud: {name: a, image: b}\n",
        "{f}:3: functions.oscar[0]: each entry is one {CLUSTER_ID: service} mapping, got 2 keys",
    ),
    Case(
        "entry-empty",
        "functions:\n  oscar:\n  - edge:\n",
        "{f}:3: functions.oscar[0].edge: the service definition is empty (name and image are required)",
    ),
    Case(
        "cluster-id-chars",
        "functions:\n  oscar:\n  - 'my cluster': {name: a, image: b}\n",
        "{f}:3: functions.oscar[0].my cluster: a cluster id is letters, digits, '_', '.' and '-'",
    ),
    Case(
        "aws-not-a-list",
        edit("  oscar:\n", "  aws: {a: 1}\n  oscar:\n"),
        "{f}:2: functions.aws: must be a list of {lambda: ..., iam: ...} entries, got a mapping",
    ),
    # --- service fields ---
    Case("name-not-dns", edit("name: blur-faces", "name: Blur_Faces"), f"{{f}}:4: {SVC}.name: {DNS}"),
    Case("name-too-long", edit("name: blur-faces", "name: " + "a" * 40), f"{{f}}:4: {SVC}.name: {DNS}"),
    Case("name-missing", edit("      name: blur-faces\n", ""), f"{{f}}:3: {SVC}: name is required"),
    Case("name-empty", edit("name: blur-faces", "name:"), f"{{f}}:4: {SVC}.name: name is required"),
    Case("name-a-number", edit("name: blur-faces", "name: 42"), f"{{f}}:4: {SVC}.name: must be a text, got a number"),
    Case("image-missing", edit("      image: ghcr.io/grycap/blurry-faces\n", ""), f"{{f}}:3: {SVC}: image is required"),
    Case(
        "image-space",
        edit("image: ghcr.io/grycap/blurry-faces", "image: ghcr.io/grycap/blurry faces"),
        f"{{f}}:5: {SVC}.image: must be a container image reference (no spaces)",
    ),
    Case(
        "memory-unit",
        edit("memory: 1Gi", "memory: 1GB"),
        f"{{f}}:7: {SVC}.memory: must be a Kubernetes quantity such as 256Mi or 1Gi, got '1GB'",
    ),
    Case(
        "memory-negative",
        edit("memory: 1Gi", "memory: -1Gi"),
        f"{{f}}:7: {SVC}.memory: must be a Kubernetes quantity such as 256Mi or 1Gi, got '-1Gi'",
    ),
    Case(
        "cpu-word",
        edit("cpu: '1.0'", "cpu: one"),
        f"{{f}}:8: {SVC}.cpu: must be a Kubernetes quantity such as 0.5 or 500m, got 'one'",
    ),
    Case(
        "memory-typo", edit("memory: 1Gi", "memroy: 1Gi"), f"{{f}}:7: {SVC}.memroy: unknown key; did you mean memory?"
    ),
    Case(
        "image-typo",
        edit("image: ghcr.io/grycap/blurry-faces", "imgae: ghcr.io/grycap/blurry-faces"),
        f"{{f}}:5: {SVC}.imgae: unknown key; did you mean image?",
    ),
    Case(
        "visibility",
        add("cpu: '1.0'", "      visibility: secret\n"),
        f"{{f}}:9: {SVC}.visibility: must be one of private, restricted, public, got 'secret'",
    ),
    Case(
        "isolation",
        add("cpu: '1.0'", "      isolation_level: GROUP\n"),
        f"{{f}}:9: {SVC}.isolation_level: must be one of SERVICE, USER, got 'GROUP'",
    ),
    Case(
        "log-level",
        add("cpu: '1.0'", "      log_level: LOUD\n"),
        f"{{f}}:9: {SVC}.log_level: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
    ),
    Case(
        "gpu-not-bool",
        add("cpu: '1.0'", "      enable_gpu: yes please\n"),
        f"{{f}}:9: {SVC}.enable_gpu: must be true or false, got a text",
    ),
    Case(
        "topology",
        add("cpu: '1.0'", "      federation: {topology: ring}\n"),
        f"{{f}}:9: {SVC}.federation.topology: must be one of none, star, mesh, got 'ring'",
    ),
    Case(
        "delegation",
        add("cpu: '1.0'", "      federation: {delegation: fastest}\n"),
        f"{{f}}:9: {SVC}.federation.delegation: must be one of static, random, load-based, topsis, got 'fastest'",
    ),
    Case(
        "federation-typo",
        add("cpu: '1.0'", "      federation: {topolgy: star}\n"),
        f"{{f}}:9: {SVC}.federation.topolgy: unknown key; did you mean topology?",
    ),
    Case(
        "old-delegation",
        add("cpu: '1.0'", "      delegation: fastest\n"),
        f"{{f}}:9: {SVC}.delegation: must be one of static, random, load-based, topsis, got 'fastest'",
    ),
    Case(
        "old-replicas-type",
        add("cpu: '1.0'", "      replicas: [{type: ftp}]\n"),
        f"{{f}}:9: {SVC}.replicas[0].type: must be one of oscar, endpoint, got 'ftp'",
    ),
    Case(
        "synchronous-negative",
        add("cpu: '1.0'", "      synchronous: {min_scale: -1}\n"),
        f"{{f}}:9: {SVC}.synchronous.min_scale: must be at least 0, got -1",
    ),
    Case(
        "api-port",
        add("cpu: '1.0'", "      expose: {api_port: [70000]}\n"),
        f"{{f}}:9: {SVC}.expose.api_port[0]: must be at most 65535, got 70000",
    ),
    Case(
        "node-port",
        add("cpu: '1.0'", "      expose: {nodePort: [80]}\n"),
        f"{{f}}:9: {SVC}.expose.nodePort[0]: must be at least 30000, got 80",
    ),
    Case(
        "env-a-list",
        add("cpu: '1.0'", "      environment: {variables: [a, b]}\n"),
        f"{{f}}:9: {SVC}.environment.variables: must be a mapping, got a list",
    ),
    Case(
        "env-value-list",
        add("cpu: '1.0'", "      environment:\n        Variables:\n          KEY: [placeholder]\n"),
        f"{{f}}:11: {SVC}.environment.Variables.KEY: must be a text, got a list",
    ),
    Case(
        "volume-size",
        add("cpu: '1.0'", "      volume: {size: big, mount_path: /data}\n"),
        f"{{f}}:9: {SVC}.volume.size: must be a Kubernetes quantity such as 1Gi, got 'big'",
    ),
    # --- inputs and outputs ---
    Case(
        "provider-unresolved",
        edit("storage_provider: minio.cloud", "storage_provider: minio.clod"),
        f"{{f}}:13: {SVC}.output[0].storage_provider: minio.clod resolves to nothing: no storage_providers.minio.clod "
        "and no cluster 'clod' (in this file's stages or clusters:, or managed by provision)",
    ),
    Case(
        "provider-type",
        edit("storage_provider: minio.cloud", "storage_provider: mino.cloud"),
        f"{{f}}:13: {SVC}.output[0].storage_provider: unknown storage provider type 'mino' "
        "(one of minio, s3, onedata, webdav, rucio); did you mean minio?",
    ),
    Case(
        "s3-no-id",
        edit("storage_provider: minio.cloud", "storage_provider: s3"),
        f"{{f}}:13: {SVC}.output[0].storage_provider: s3 needs the provider's id: s3.<id> (from storage_providers.s3)",
    ),
    Case(
        "s3-unresolved",
        edit("storage_provider: minio.cloud", "storage_provider: s3.aws"),
        f"{{f}}:13: {SVC}.output[0].storage_provider: s3.aws resolves to nothing: no storage_providers.s3.aws",
    ),
    Case(
        "bucket-rules",
        edit("path: faces/in", "path: Faces/in"),
        f"{{f}}:11: {SVC}.input[0].path: bucket 'Faces' breaks the bucket naming rules "
        "(3-63 lowercase letters, digits, '.', '-')",
    ),
    Case("path-missing", edit("        path: faces/in\n", ""), f"{{f}}:10: {SVC}.input[0]: path is required"),
    Case(
        "suffix-mapping",
        edit("        path: masks/in\n", "        path: masks/in\n        suffix: {a: 1}\n"),
        f"{{f}}:15: {SVC}.output[0].suffix: must be a list, got a mapping",
    ),
    Case(
        "io-typo",
        edit("        path: faces/in\n", "        pth: faces/in\n"),
        f"{{f}}:11: {SVC}.input[0].pth: unknown key; did you mean path?",
    ),
    Case(
        "duplicate-service",
        edit("  - cloud:\n      name: mask-detector", "  - edge:\n      name: blur-faces"),
        "{f}:16: functions.oscar[1].edge.name: service 'blur-faces' is already defined on cluster edge (line 3); "
        "names are unique per cluster",
    ),
    Case(
        "script-missing",
        edit("script: blur.sh", "script: nosuch.sh"),
        f"{{f}}:6: {SVC}.script: no such file: nosuch.sh (looked in {{d}})",
    ),
    Case(
        "cycle",
        CYCLE,
        "{f}:7: functions.oscar[0].edge.output: the stages feed each other in a cycle: "
        "edge/first -> edge/second -> edge/first",
    ),
    Case(
        "self-loop",
        edit("        path: masks/out\n", "        path: masks/in/again\n"),
        "{f}:22: functions.oscar[1].cloud.output: the stages feed each other in a cycle: "
        "cloud/mask-detector -> cloud/mask-detector",
    ),
    # --- storage_providers and clusters ---
    Case(
        "providers-type",
        BASE + "storage_providers:\n  mnio: {x: {}}\n",
        "{f}:26: storage_providers.mnio: unknown storage provider type (one of minio, s3, onedata, webdav, rucio); "
        "did you mean minio?",
    ),
    Case(
        "provider-endpoint",
        BASE + "storage_providers:\n  minio:\n    other: {endpoint: minio.example.org}\n",
        "{f}:27: storage_providers.minio.other.endpoint: must be an http(s) URL",
    ),
    Case(
        "provider-key-typo",
        BASE + "storage_providers:\n  minio:\n    other:\n      acces_key: x\n",
        "{f}:28: storage_providers.minio.other.acces_key: unknown key; did you mean access_key?",
    ),
    Case(
        "providers-a-list",
        BASE + "storage_providers: [minio]\n",
        "{f}:25: storage_providers: must be a mapping of provider types (minio, s3, onedata, webdav, rucio), "
        "got a list",
    ),
    Case(
        "cluster-endpoint",
        BASE + "clusters:\n  remote: {endpoint: 'ftp://x'}\n",
        "{f}:26: clusters.remote.endpoint: must be an http(s) URL",
    ),
    Case(
        "cluster-ssl-verify",
        BASE + "clusters:\n  remote: {endpoint: 'https://x', ssl_verify: maybe}\n",
        "{f}:26: clusters.remote.ssl_verify: must be true or false, got a text",
    ),
    # --- functions.aws (SCAR's Lambda functions) ---
    Case(
        "lambda-name",
        BASE + LAMBDA.replace("name: scar-fn", "name: scar fn"),
        "{f}:27: functions.aws[0].lambda.name: must be 1-64 letters, digits, '-' or '_'",
    ),
    Case(
        "lambda-image-not-a-uri",
        BASE + LAMBDA.replace("123456789012.dkr.ecr.us-east-1.amazonaws.com/fn:1", "./Dockerfile"),
        "{f}:28: functions.aws[0].lambda.container.image: must be an image URI such as "
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:tag (building or pushing images is out of scope: push it "
        "first)",
    ),
    Case(
        "lambda-no-role",
        BASE + LAMBDA.replace("    iam: {role: 'arn:aws:iam::123456789012:role/scar'}\n", ""),
        "{f}:26: functions.aws[0]: iam is required",
    ),
    Case(
        "lambda-input-not-s3",
        BASE + LAMBDA.replace("input: [{storage_provider: s3.aws1", "input: [{storage_provider: minio.cloud"),
        "{f}:29: functions.aws[0].lambda.input[0].storage_provider: a Lambda function is triggered by s3.<id> only",
    ),
    Case(
        "lambda-output-own-minio",
        BASE + LAMBDA.replace("output: [{storage_provider: minio.cloud", "output: [{storage_provider: minio"),
        "{f}:30: functions.aws[0].lambda.output[0].storage_provider: a Lambda function has no MinIO of its own: "
        "name a cluster's, minio.<cluster-id>",
    ),
    Case(
        "lambda-batch",
        BASE + LAMBDA.replace("      memory: 1024\n", "      execution_mode: batch\n"),
        "{f}:31: functions.aws[0].lambda.execution_mode: only lambda is deployed by provision (not AWS Batch)",
    ),
    Case(
        "lambda-role-arn",
        BASE + LAMBDA.replace("arn:aws:iam::123456789012:role/scar", "scar-role"),
        "{f}:32: functions.aws[0].iam.role: must be an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
    ),
    Case(
        "cluster-called-aws",
        BASE.replace("  - cloud:\n", "  - aws:\n").replace("minio.cloud", "minio.aws") + LAMBDA,
        "{f}:15: functions.oscar[1].aws: cluster id 'aws' names the AWS Lambda functions of this file: rename it",
    ),
]


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> CLI:
    root = tmp_path_factory.mktemp("fdl-corpus")
    return CLI(root / "home", "http://127.0.0.1:9/", root / "no-auth")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_fdl_prints_its_line(case: Case, cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "blur.sh").write_text("#!/bin/sh\n")
    (tmp_path / "detect.sh").write_text("#!/bin/sh\n")
    fdl = tmp_path / "wf.yaml"
    fdl.write_text(case.text)
    before = sorted(p.name for p in cli.home.iterdir())
    result = cli.in_process("workflow", "validate", str(fdl))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    expected = "error: " + case.line.replace("{f}", str(fdl)).replace("{d}", str(tmp_path.resolve()))
    assert expected in lines, "\n".join(lines)
    assert all(line.startswith(("error: ", "warning: ", "hint: ")) for line in lines), lines
    assert sorted(p.name for p in cli.home.iterdir()) == before
