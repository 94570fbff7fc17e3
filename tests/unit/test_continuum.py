"""The continuum file reader (a good file; bad files, each with the exact ``FILE:LINE: field: rule`` lines it must
print), the pure planning of each cluster, the journal's reading, and the engine's up over fake services: one
cluster failing leaves the other and skips the workflow that needs it, and the rerun does only what is missing."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from provisioner.continuum.engine import ContinuumEngine, Services
from provisioner.continuum.plan import (
    Action,
    last_outcomes,
    left_behind,
    membership,
    plan_leg,
    since_last_down,
)
from provisioner.continuum.spec import ContinuumInvalid, ContinuumSpec, read_continuum
from provisioner.errors import OperationFailed
from provisioner.lifecycle import Lifecycle
from provisioner.model import ClusterKind
from provisioner.state import ClusterRecord, JournalEntry, Phase, Store
from tests.clihelper import CLI

SITES = frozenset({"local-sim", "egi-cesnet"})

INVENTORY = """\
front:
  hosts:
    field-server: {ansible_host: 192.0.2.10, ansible_user: ubuntu}
wn:
  hosts:
    field-agent: {ansible_host: 192.0.2.11, ansible_user: ubuntu}
"""

GOOD = """\
name: demo
clusters:
  cloud-a:
    template: oscar
    site: local-sim
    inputs: {wn_num: 2, oscar_password: given-pw-123}
    components: [oscar]
    oscar_url: http://oscar.example.org
  cloud-b: {template: kubernetes, site: egi-cesnet}
  field:
    edge:
      inventory: hosts.yml
      components: [minio]
  probe:
    edge: {inventory: hosts.yml, preflight: true}
workflow:
  name: flow
  inline:
    functions:
      oscar:
      - field:
          name: reverse
          image: alpine
          script: scripts/reverse.sh
          input: [{storage_provider: minio, path: faces/in}]
          output: [{storage_provider: minio.cloud-a, path: masks/in}]
      - cloud-a:
          name: upper
          image: alpine
          script: "scripts/upper.sh"
          input: [{storage_provider: minio, path: masks/in}]
          output: [{storage_provider: minio, path: results/out}]
"""


def write(folder: Path, text: str, name: str = "continuum.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hosts.yml").write_text(INVENTORY)
    (folder / "scripts").mkdir(exist_ok=True)
    for script in ("reverse.sh", "upper.sh"):
        (folder / "scripts" / script).write_text("cat $INPUT_FILE_PATH\n")
    path = folder / name
    path.write_text(text)
    return path


def read(path: Path, known: frozenset[str] = frozenset()) -> ContinuumSpec:
    return read_continuum(path, sites=SITES, known_clusters=known)


# --- the reader -------------------------------------------------------------------------------------------------------


def test_a_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    spec = read(path)
    assert spec.name == "demo" and spec.path == path.resolve()
    assert spec.ids == ("cloud-a", "cloud-b", "field", "probe")
    a = spec.leg("cloud-a")
    assert (a.kind, a.template, a.site, a.components, a.oscar_url) == (
        ClusterKind.IM, "oscar", "local-sim", ("oscar",), "http://oscar.example.org",
    )  # fmt: skip
    assert a.public["wn_num"] == 2 and "oscar_password" not in a.public
    assert a.secrets_given == {"oscar_password"} and a.inputs["oscar_password"] == "given-pw-123"
    assert a.line == 3
    # What cluster create records for the same template, site and inputs: a rerun compares the two.
    assert a.fingerprint == Lifecycle._fingerprint("oscar", "local-sim", a.public)
    assert a.chosen() == ["knative", "minio", "oscar"]  # OSCAR's dependencies, as install runs them
    b = spec.leg("cloud-b")
    assert (b.template, b.components, b.oscar_url, b.line) == ("kubernetes", (), None, 9)
    field, probe = spec.leg("field"), spec.leg("probe")
    assert field.kind is ClusterKind.EDGE and field.inventory == (tmp_path / "hosts.yml").resolve()
    assert field.recorded and not probe.recorded and probe.preflight
    assert field.digest != probe.digest
    workflow = spec.workflow
    assert workflow is not None
    assert (workflow.name, workflow.fdl, workflow.line) == ("flow", None, 18)
    assert workflow.stages == ("field/reverse", "cloud-a/upper")
    assert workflow.needs == {"field", "cloud-a"}
    # The inline FDL keeps its lines (so its problems are lines of this file), scripts made absolute.
    assert workflow.inline_text is not None
    lines = workflow.inline_text.splitlines()
    assert len(lines) == len(GOOD.splitlines())
    original = GOOD.splitlines()
    first = original.index("    functions:")
    assert lines[:first] == [" " * len(line) for line in original[:first]]  # everything before blanked
    assert lines[first] == original[first]
    script = [i for i, line in enumerate(original) if "script:" in line]
    assert lines[script[0]].strip() == f"script: {json.dumps(str(tmp_path / 'scripts' / 'reverse.sh'))}"
    assert lines[script[1]].strip() == f"script: {json.dumps(str(tmp_path / 'scripts' / 'upper.sh'))}"


def test_the_digest_follows_the_inventory_text(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    first = read(path).leg("probe").digest
    (tmp_path / "hosts.yml").write_text(INVENTORY.replace("192.0.2.11", "192.0.2.12"))
    assert read(path).leg("probe").digest != first


def test_a_workflow_by_path_and_its_problems_name_the_fdl(tmp_path: Path) -> None:
    fdl = tmp_path / "flow.yaml"
    fdl.write_text("functions:\n  oscar:\n  - cloud-b:\n      name: up\n      imag: alpine\n")
    path = write(tmp_path, "name: d\nclusters:\n  cloud-b: {template: kubernetes, site: local-sim}\n"
                 "workflow: {fdl: flow.yaml}\n")  # fmt: skip
    with pytest.raises(ContinuumInvalid) as caught:
        read(path)
    assert caught.value.problems == [f"{fdl}:5: functions.oscar[0].cloud-b.imag: unknown key; did you mean image?"]
    fdl.write_text("functions:\n  oscar:\n  - cloud-b: {name: up, image: alpine}\n")
    spec = read(path)
    assert spec.workflow is not None and spec.workflow.fdl == fdl and spec.workflow.name == "d"
    assert spec.workflow.inline_text is None and spec.workflow.needs == {"cloud-b"}


BAD: list[tuple[str, str, list[str]]] = [
    ("not a mapping", "- a\n", ["1: (top): must be a mapping with name:, clusters: and workflow:, got a list"]),
    (
        "empty",
        "",
        [
            "1: clusters: is required: a mapping of cluster id to {template, site, ...} or {edge: {...}}",
            "1: name: is required",
        ],
    ),
    (
        "unknown keys",
        "name: d\nnmae: x\nclusters:\n  a: {template: oscar, site: local-sim, input: {}}\nextra: 1\n",
        [
            "2: nmae: unknown key; did you mean 'name'?",
            "4: clusters.a.input: unknown key; did you mean 'inputs'?",
            "5: extra: unknown key (known: name, clusters, workflow)",
        ],
    ),
    (
        "names",
        "name: Demo\nclusters:\n  Cloud_A: {template: oscar, site: local-sim}\n",
        [
            "1: name: must start with a lowercase letter and have at most 63 lowercase letters, digits or '-'",
            "3: clusters.Cloud_A: a cluster id must start with a lowercase letter and have at most 63 lowercase "
            "letters, digits or '-'",
        ],
    ),
    (
        "template, site, inputs, components, url",
        textwrap.dedent("""\
            name: d
            clusters:
              a:
                template: oscr
                site: local-sin
              b:
                template: oscar
                site: local-sim
                inputs:
                  wn_num: many
                  wn_nmu: 2
                components: [oscar, minoi]
                oscar_url: ftp://x
              c: {site: local-sim}
            """),
        [
            "4: clusters.a.template: unknown template 'oscr'; did you mean 'oscar'? (known: kubernetes, oscar)",
            "5: clusters.a.site: unknown site 'local-sin'; did you mean 'local-sim'? (known: egi-cesnet, local-sim)",
            "10: clusters.b.inputs.wn_num: must be an integer, got 'many'",
            "11: clusters.b.inputs.wn_nmu: unknown input of template 'oscar'; did you mean 'wn_num'?",
            "12: clusters.b.components[1]: unknown component 'minoi'; did you mean 'minio'? "
            "(known: knative, yunikorn, minio, onedata, oscar, registry)",
            "13: clusters.b.oscar_url: must be an http(s) URL, got 'ftp://x'",
            "14: clusters.c.template: is required",
        ],
    ),
    (
        "a component the inputs cannot satisfy",
        "name: d\nclusters:\n  a:\n    template: oscar\n    site: local-sim\n    components: [onedata]\n",
        ["6: clusters.a.components: onedata needs the onedata_host, onedata_space and onedata_token inputs"],
    ),
    (
        "edge",
        textwrap.dedent("""\
            name: d
            clusters:
              e:
                edge: {inventory: nowhere.yml, preflight: yes please, oscar_url: http://x.org}
                site: local-sim
              f:
                edge: {inventory: hosts.yml, preflight: true, oscar_url: http://x.org, invetory: x}
            """),
        [
            "4: clusters.e.edge.inventory: cannot read inventory {dir}/nowhere.yml: No such file or directory",
            "4: clusters.e.edge.preflight: must be true or false, got a text",
            "5: clusters.e.site: an edge cluster is given as {edge: {...}} only: site belongs in an IM cluster",
            "7: clusters.f.edge.invetory: unknown key; did you mean 'inventory'?",
            "7: clusters.f.edge.oscar_url: a preflight-only edge cluster is not recorded: it has no OSCAR to record",
        ],
    ),
    (
        "workflow shape",
        "name: d\nclusters:\n  a: {template: oscar, site: local-sim}\nworkflow:\n  fdl: x.yaml\n  inline: {}\n",
        ["4: workflow: give fdl: PATH or inline: {...}, not both"],
    ),
    (
        "workflow file missing, bad name",
        "name: d\nclusters:\n  a: {template: oscar, site: local-sim}\nworkflow: {fdl: x.yaml, name: 'a b'}\n",
        [
            "4: workflow.fdl: no such file: x.yaml (looked in {dir})",
            "4: workflow.name: must be 1-63 letters, digits, '-', '_' or '.', got 'a b'",
        ],
    ),
    (
        "inline FDL problems are this file's lines",
        textwrap.dedent("""\
            name: d
            clusters:
              a: {template: oscar, site: local-sim}
            workflow:
              inline:
                functions:
                  oscar:
                  - a:
                      name: up
                      image: alpine
                      memroy: 1Gi
                      script: nosuch.sh
            """),
        ["11: workflow.inline.functions.oscar[0].a.memroy: unknown key; did you mean memory?"],
    ),
    (
        "inline FDL script missing",
        textwrap.dedent("""\
            name: d
            clusters:
              a: {template: oscar, site: local-sim}
            workflow:
              inline:
                functions:
                  oscar:
                  - a: {name: up, image: alpine, script: nosuch.sh}
            """),
        ["8: workflow.inline.functions.oscar[0].a.script: no such file: {dir}/nosuch.sh (looked in {dir})"],
    ),
    (
        "the workflow's clusters",
        textwrap.dedent("""\
            name: d
            clusters:
              a: {template: oscar, site: local-sim}
              p:
                edge: {inventory: hosts.yml, preflight: true}
            workflow:
              inline:
                functions:
                  oscar:
                  - p: {name: one, image: alpine}
                  - elsewhere: {name: two, image: alpine}
            """),
        [
            "10: workflow.inline.functions.oscar[0].p: stage p/one uses cluster p, a preflight-only edge cluster: "
            "nothing is recorded for it, so no workflow can use it (drop preflight: true)",
            "11: workflow.inline.functions.oscar[1].elsewhere: stage elsewhere/two uses cluster 'elsewhere', which is "
            "not one of this file's clusters (a, p) nor defined under the FDL's clusters:",
        ],
    ),
    (
        "not YAML",
        "name: d\nclusters: [\n",
        ["3: (file): not valid YAML (expected the node content, but found '<stream end>')"],
    ),
    ("a key twice", "name: d\nname: e\n", ["2: name: given twice in one mapping"]),
]


@pytest.mark.parametrize(("case", "text", "expected"), BAD, ids=[case for case, _, _ in BAD])
def test_a_bad_file_is_every_problem_on_its_line(tmp_path: Path, case: str, text: str, expected: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ContinuumInvalid) as caught:
        read(path)
    problems = caught.value.problems
    assert caught.value.exit_code == 2
    assert problems == [f"{path}:{line}".replace("{dir}", str(tmp_path.resolve())) for line in expected]


def test_the_known_clusters_may_be_named_by_the_workflow(tmp_path: Path) -> None:
    path = write(tmp_path, "name: d\nclusters:\n  a: {template: oscar, site: local-sim}\nworkflow:\n  inline:\n"
                 "    functions: {oscar: [{elsewhere: {name: two, image: alpine}}]}\n")  # fmt: skip
    spec = read(path, known=frozenset({"elsewhere"}))
    assert spec.workflow is not None and spec.workflow.needs == frozenset()


# --- planning (pure) --------------------------------------------------------------------------------------------------


def record(name: str, *, inputs_hash: str, inputs: dict[str, Any] | None = None, infra_id: str | None = "inf-1",
           state: str = "configured", kind: ClusterKind = ClusterKind.IM, extra: dict[str, Any] | None = None,
           template: str = "oscar", site: str = "local-sim") -> ClusterRecord:  # fmt: skip
    now = datetime.now(UTC)
    return ClusterRecord(
        name=name, im_url="http://im", infra_id=infra_id, template=template, site=site, inputs=inputs or {},
        inputs_hash=inputs_hash, deployment_id="d-1", state=state, workers=1, created_at=now, updated_at=now,
        extra=extra or {}, kind=kind,
    )  # fmt: skip


def entry(seq: int, phase: Phase, **detail: Any) -> JournalEntry:
    return JournalEntry(seq=seq, cluster="continuum:demo", phase=phase, ts=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                        detail=detail)  # fmt: skip


def test_plan_of_an_im_cluster(tmp_path: Path) -> None:
    leg = read(write(tmp_path, GOOD)).leg("cloud-a")
    new = plan_leg(leg, None, kept_secrets={}, entries=[])
    assert (new.action, new.install, new.endpoint, new.refusal) == (
        Action.CREATE, ["knative", "minio", "oscar"], "http://oscar.example.org", None,
    )  # fmt: skip
    adopt = plan_leg(leg, None, kept_secrets={"oscar_password": "given-pw-123"}, entries=[])
    assert "adopts" in adopt.note
    extra = {"components": ["knative", "minio", "oscar"], "oscar_url": "http://oscar.example.org"}
    same = record("cloud-a", inputs_hash=leg.fingerprint, inputs=dict(leg.public), extra=extra)
    exists = plan_leg(leg, same, kept_secrets={"oscar_password": "given-pw-123"}, entries=[])
    assert (exists.action, exists.state, exists.install, exists.endpoint) == (Action.EXISTS, "configured", [], None)
    partial = plan_leg(leg, record("cloud-a", inputs_hash=leg.fingerprint, extra={"components": ["minio"]}),
                       kept_secrets={}, entries=[])  # fmt: skip
    assert partial.install == ["knative", "minio", "oscar"] and partial.endpoint == "http://oscar.example.org"
    resume = plan_leg(leg, record("cloud-a", inputs_hash=leg.fingerprint, infra_id=None), kept_secrets={}, entries=[])
    assert resume.action is Action.RESUME
    other = record("cloud-a", inputs_hash="other", inputs={**leg.public, "wn_num": 1}, site="egi-cesnet")
    changed = plan_leg(leg, other, kept_secrets={}, entries=[])
    assert changed.action is Action.CHANGED
    assert [(c.field, c.before, c.after) for c in changed.changes] == [
        ("site", "egi-cesnet", "local-sim"), ("inputs.wn_num", 1, 2),
    ]  # fmt: skip
    assert changed.refusal is not None and "provision cluster scale cloud-a" in changed.refusal
    secret = plan_leg(leg, same, kept_secrets={"oscar_password": "another-pw"}, entries=[])
    assert secret.action is Action.CHANGED and "another oscar_password" in str(secret.refusal)
    assert "another-pw" not in json.dumps(secret.doc()) and "given-pw-123" not in json.dumps(secret.doc())
    edge = plan_leg(leg, record("cloud-a", inputs_hash="x", kind=ClusterKind.EDGE), kept_secrets={}, entries=[])
    assert edge.action is Action.CONFLICT and "is an edge cluster" in str(edge.refusal)


def test_plan_of_an_edge_cluster(tmp_path: Path) -> None:
    spec = read(write(tmp_path, GOOD))
    probe, field = spec.leg("probe"), spec.leg("field")
    assert plan_leg(probe, None, kept_secrets={}, entries=[]).action is Action.PREFLIGHT
    passed = [entry(5, Phase.CONTINUUM_STEP_DONE, cluster="probe", step="preflight", digest=probe.digest)]
    again = plan_leg(probe, None, kept_secrets={}, entries=passed)
    assert again.action is Action.PASSED and "2026-01-02 03:04:05" in again.note
    other = [entry(5, Phase.CONTINUUM_STEP_DONE, cluster="probe", step="preflight", digest="another")]
    assert plan_leg(probe, None, kept_secrets={}, entries=other).action is Action.PREFLIGHT
    assert plan_leg(field, None, kept_secrets={}, entries=[]).action is Action.INSTALL
    installed = record("field", inputs_hash="x", kind=ClusterKind.EDGE, state="installed")
    done = [entry(6, Phase.CONTINUUM_STEP_DONE, cluster="field", step="edge", digest=field.digest)]
    assert plan_leg(field, installed, kept_secrets={}, entries=done).action is Action.INSTALLED
    registered = record("field", inputs_hash="x", kind=ClusterKind.EDGE, state="registered")
    assert plan_leg(field, registered, kept_secrets={}, entries=done).action is Action.INSTALL
    im = plan_leg(field, record("field", inputs_hash="x"), kept_secrets={}, entries=[])
    assert im.action is Action.CONFLICT and im.refusal is not None


def test_the_journal_read_back(tmp_path: Path) -> None:
    spec = read(write(tmp_path, GOOD))
    up = {"source": "/x/c.yaml", "workflow": "flow", "fdl": "/h/flow.yaml",
          "clusters": [{"id": "cloud-a", "kind": "im"}, {"id": "probe", "kind": "edge", "preflight": True},
                       {"id": "gone", "kind": "im"}]}  # fmt: skip
    entries = [
        entry(1, Phase.CONTINUUM_UP, **{**up, "workflow": "old"}),
        entry(2, Phase.CONTINUUM_STEP_FAILED, cluster="cloud-a", step="cluster", error="boom", cause="quota"),
        entry(3, Phase.CONTINUUM_DELETED, clusters=[]),
        entry(4, Phase.CONTINUUM_UP, **up),
        entry(5, Phase.CONTINUUM_STEP, cluster="cloud-a", step="cluster"),
        entry(6, Phase.CONTINUUM_STEP_DONE, cluster="cloud-a", step="cluster"),
        entry(7, Phase.CONTINUUM_STEP_FAILED, cluster="probe", step="preflight", error="refused"),
        entry(8, Phase.CONTINUUM_STEP_DONE, step="workflow", workflow="flow"),
    ]
    assert [e.seq for e in since_last_down(entries)] == [4, 5, 6, 7, 8]
    found = membership("demo", entries)
    assert found is not None and found.seq == 4 and found.workflow == "flow"
    assert found.ids() == ["cloud-a", "probe", "gone"] and [m.recorded for m in found.members] == [True, False, True]
    outcomes = last_outcomes(since_last_down(entries), 0)
    assert outcomes["cloud-a"]["outcome"] == "done" and outcomes["probe"]["error"] == "refused"
    assert outcomes["workflow"]["outcome"] == "done"
    assert left_behind(found, spec) == (["gone"], None)
    assert membership("demo", entries[:3]) is None


# --- the engine over fake services ------------------------------------------------------------------------------------


class FakeLifecycle:
    """Lifecycle.create as far as the continuum sees it: a record in the real store, or a failure with IM's text."""

    def __init__(self, home: Path, failing: set[str], calls: list[str]) -> None:
        self.home, self.failing, self.calls = home, failing, calls

    def create(self, name: str, *, template: str, site: str, inputs: Any, wait: bool, timeout: float) -> Any:
        self.calls.append(f"create {name}")
        if name in self.failing:
            error = OperationFailed(f"cluster {name!r} ended failed (VMs 1): Error launching the VMs")
            error.evidence = 'deployments.apps "wn" is forbidden: exceeded quota: object-counts, requested: 1'
            raise error
        from provisioner.continuum.spec import fingerprint
        from provisioner.tosca import prepare_inputs

        public = prepare_inputs(template, inputs, secrets_store=None).public
        with Store.open(self.home) as store:
            if store.get_cluster(name) is None:
                store.upsert_cluster(name, im_url="http://im", template=template, site=site, inputs=public,
                                     deployment_id=f"d-{name}", inputs_hash=fingerprint(template, site, public),
                                     infra_id=f"inf-{name}", state="configured")  # fmt: skip
        return SimpleNamespace(state="configured", infra_id=f"inf-{name}")

    def record(self, name: str) -> ClusterRecord:
        with Store.open(self.home) as store:
            found = store.get_cluster(name)
        assert found is not None
        return found

    def set_oscar_endpoint(self, name: str, url: str | None) -> None:
        self.calls.append(f"endpoint {name}")
        with Store.open(self.home) as store:
            store.update_cluster(name, extra={"oscar_url": url})

    def close(self) -> None:
        pass


class FakeWorkflows:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def apply(self, path: Path, name: str) -> Any:
        self.calls.append(f"apply {name} {path.name}")
        assert path.is_file()
        done = [SimpleNamespace(action=SimpleNamespace(value="create"), cluster="b", service="s")]
        return SimpleNamespace(ok=True, done=done)


TWO = """\
name: two
clusters:
  a: {template: kubernetes, site: local-sim, oscar_url: "http://a.example.org"}
  b: {template: kubernetes, site: local-sim}
workflow:
  inline:
    functions: {oscar: [{b: {name: s, image: alpine}}]}
"""


def test_up_one_cluster_failing_leaves_the_other_skips_the_workflow_and_the_rerun_does_the_rest(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    failing, calls, lines = {"b"}, [], []  # type: ignore[var-annotated]
    services = Services(
        lifecycle=lambda _cluster: FakeLifecycle(home, failing, calls),  # type: ignore[arg-type,return-value]
        stack=lambda _lc, _cluster: pytest.fail("no add-ons in this file"),
        workflow=lambda: FakeWorkflows(calls),  # type: ignore[arg-type,return-value]
    )
    engine = ContinuumEngine(home, services, lock_timeout=5, progress=lines.append)
    spec = read(write(tmp_path, TWO))

    first = engine.up(spec)
    assert not first.ok
    legs = {leg.id: leg for leg in first.legs}
    assert legs["a"].ok and legs["a"].state == "configured"
    assert [s["step"] for s in legs["a"].steps] == ["cluster", "endpoint"]
    assert not legs["b"].ok and legs["b"].failed_step == "cluster"
    assert legs["b"].cause is not None and legs["b"].cause["cause"] == "quota"
    assert legs["b"].runbook == "cloud-refused"
    assert first.workflow is not None and first.workflow.status == "skipped" and first.workflow.clusters == ["b"]
    assert not any(call.startswith("apply") for call in calls)
    with Store.open(home) as store:
        journal = store.journal("continuum:two")
    assert journal[0].phase == Phase.CONTINUUM_UP and journal[-1].phase == Phase.CONTINUUM_UP_ENDED
    assert journal[-1].detail["failed"] == ["b"] and journal[-1].detail["workflow"] == "skipped"
    failed = [e.detail for e in journal if e.phase == Phase.CONTINUUM_STEP_FAILED]
    assert failed == [{"cluster": "b", "step": "cluster", "action": "create", "cause": "quota",
                       "runbook": "cloud-refused", "error": failed[0]["error"]}]  # fmt: skip

    # The cause fixed: up again checks a (no endpoint recorded again), makes b, applies the workflow once.
    failing.clear()
    calls.clear()
    second = engine.up(spec)
    assert second.ok and second.workflow is not None and second.workflow.sent == ["create b/s"]
    assert sorted(calls[:2]) == ["create a", "create b"] and calls[2:] == ["apply two two.yaml"]
    assert {leg.id: leg.action for leg in second.legs} == {"a": "exists", "b": "create"}
    assert (home / "continuum" / "two" / "two.yaml").is_file()
    assert any(line.startswith("b: cluster failed: cluster 'b' ended failed") for line in lines)


def test_up_refuses_a_cluster_with_other_inputs_before_anything(tmp_path: Path) -> None:
    from provisioner.tosca import prepare_inputs

    home = tmp_path / "home"
    made = {**prepare_inputs("kubernetes", {}, secrets_store=None).public, "wn_num": 3}
    with Store.open(home) as store:
        store.upsert_cluster("a", im_url="http://im", template="kubernetes", site="local-sim", inputs=made,
                             deployment_id="d-a", inputs_hash="old", infra_id="inf-a", state="configured")  # fmt: skip
    services = Services(
        lifecycle=lambda _c: pytest.fail("nothing may run"),
        stack=lambda _lc, _c: pytest.fail("nothing may run"),
        workflow=lambda: pytest.fail("nothing may run"),
    )
    path = write(tmp_path, TWO)
    with pytest.raises(ContinuumInvalid) as caught:
        ContinuumEngine(home, services, lock_timeout=5).up(read(path))
    assert caught.value.problems == [
        f"{path.resolve()}:3: clusters.a: cluster 'a' exists with other template, site or inputs (inputs.wn_num: 3 -> "
        "1): change it with provision cluster scale a --workers N, or remove it first: provision cluster destroy a"
    ]
    with Store.open(home) as store:
        assert store.journal("continuum:two") == []


# --- the CLI, in process ----------------------------------------------------------------------------------------------


def test_the_cli_refuses_a_bad_file_with_its_lines_and_makes_nothing(tmp_path: Path) -> None:
    cli = CLI(tmp_path / "home", "http://127.0.0.1:9", tmp_path / "no-auth")
    path = write(tmp_path, "name: d\nclusters:\n  a: {template: oscar, site: local-sim, inputs: {wn_num: -1}}\n")
    for command in ("up", "plan"):
        result = cli.in_process("continuum", command, str(path))
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[0].startswith(f"error: {path}:3: clusters.a.inputs.wn_num: ")
        assert result.stdout == ""
    assert not (cli.home / "state.db").exists()
    unknown = cli.in_process("continuum", "status", "nosuch")
    assert unknown.returncode == 1 and "no continuum named 'nosuch'" in unknown.stderr
    refused = cli.in_process("continuum", "down", "nosuch")
    assert refused.returncode == 2 and "--yes" in refused.stderr


def test_plan_shows_a_changed_cluster_and_exits_2_as_up_would_refuse_it(tmp_path: Path) -> None:
    from provisioner.tosca import prepare_inputs

    cli = CLI(tmp_path / "home", "http://127.0.0.1:9", tmp_path / "no-auth")
    made = {**prepare_inputs("kubernetes", {}, secrets_store=None).public, "wn_num": 3}
    with Store.open(cli.home) as store:
        store.upsert_cluster("a", im_url="http://im", template="kubernetes", site="local-sim", inputs=made,
                             deployment_id="d-a", inputs_hash="old", infra_id="inf-a", state="configured")  # fmt: skip
    path = write(tmp_path, TWO)
    shown = cli.in_process("continuum", "plan", str(path))
    assert shown.returncode == 2, shown.stderr
    rows = {line.split()[1]: line.split()[0] for line in shown.stdout.splitlines()[2:4]}
    assert rows == {"a": "changed", "b": "create"}
    assert "inputs.wn_num: 3 -> 1" in shown.stdout
    assert shown.stderr.splitlines()[0].startswith(f"error: {path.resolve()}:3: clusters.a: cluster 'a' exists with ")
    doc = json.loads(cli.in_process("continuum", "plan", str(path), "-o", "json").stdout)
    assert doc["clusters"][0]["changes"] == [{"field": "inputs.wn_num", "before": 3, "after": 1}]
    assert doc["workflow"]["planned"] is False and len(doc["up_refuses"]) == 1
