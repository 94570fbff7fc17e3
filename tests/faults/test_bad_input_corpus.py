"""A corpus of bad inputs: each must exit 2 with one line naming the field (and at most a hint), and send nothing.

Templates and TOSCA files, ``--set`` values, inputs files, auth files, autoscale policies, config files (and
PROVISION_* values), edge inventories. The CLI talks to IM through a fault proxy with no faults planned: its record
of requests proves that not one request (let alone a POST) reached IM; IM's infrastructure list and the local
registry are compared before and after the whole corpus.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.clihelper import CLI
from tests.conftest import RunningIM
from tests.faultproxy import FaultProxy
from tests.faults.conftest import infras

pytestmark = pytest.mark.im


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # "{d}" is the corpus directory, "{auth}" the good auth file
    field: str  # must appear in the error line
    env: dict[str, str] = field(default_factory=dict)


CREATE = ("cluster", "create", "bad", "-t", "oscar", "-s", "local-sim")


def setv(*pairs: str) -> tuple[str, ...]:
    return tuple(arg for pair in pairs for arg in ("--set", pair))


CASES: list[Case] = [
    # --- templates and TOSCA files -------------------------------------------------------------------------------
    Case("template-unknown", ("cluster", "create", "bad", "-t", "nosuch", "-s", "local-sim"), "--template"),
    Case("template-unknown-site", ("cluster", "create", "bad", "-t", "oscar", "-s", "nosuch-site"), "--site"),
    Case("template-bad-name", ("cluster", "create", "9bad", "-t", "oscar", "-s", "local-sim"), "NAME"),
    Case("template-show-unknown", ("template", "show", "nosuch"), "nosuch"),
    Case("validate-not-yaml", ("template", "validate", "{d}/broken.yaml"), "NAME|FILE"),
    Case("validate-not-mapping", ("template", "validate", "{d}/list.yaml"), "NAME|FILE"),
    Case("validate-not-tosca", ("template", "validate", "{d}/not-tosca.yaml"), "tosca"),
    Case("validate-missing-file", ("template", "validate", "{d}/nosuch.yaml"), "NAME|FILE"),
    Case("validate-set-on-file", ("template", "validate", "{d}/not-tosca.yaml", "--set", "wn_num=2"), "NAME|FILE"),
    Case("validate-template-bad-set", ("template", "validate", "oscar", "--set", "wn_num=many"), "wn_num"),
    Case("infra-create-missing-file", ("infra", "create", "{d}/nosuch.yaml"), "TEMPLATE"),
    # --- --set values ----------------------------------------------------------------------------------------------
    Case("set-int-not-a-number", (*CREATE, *setv("wn_num=many")), "wn_num"),
    Case("set-int-fraction", (*CREATE, *setv("wn_num=2.5")), "wn_num"),
    Case("set-int-above-max", (*CREATE, *setv("wn_num=101")), "wn_num"),
    Case("set-cpus-below-min", (*CREATE, *setv("fe_cpus=1")), "fe_cpus"),
    Case("set-cpus-above-max", (*CREATE, *setv("wn_cpus=129")), "wn_cpus"),
    Case("set-size-below-min", (*CREATE, *setv("fe_mem=3GiB")), "fe_mem"),
    Case("set-size-not-a-size", (*CREATE, *setv("wn_mem=lots")), "wn_mem"),
    Case("set-size-above-max", (*CREATE, *setv("storage_size=20000GiB")), "storage_size"),
    Case("set-version-out-of-range", (*CREATE, *setv("kube_version=1.27.0")), "kube_version"),
    Case("set-version-not-a-version", (*CREATE, *setv("kube_version=latest")), "kube_version"),
    Case("set-bool-not-a-bool", (*CREATE, *setv("knative=maybe")), "knative"),
    Case("set-bool-number", (*CREATE, *setv("kube_install_yunikorn=2")), "kube_install_yunikorn"),
    Case("set-token-too-short", (*CREATE, *setv("admin_token=short-token")), "admin_token"),
    Case("set-token-bad-chars", (*CREATE, *setv("admin_token=has spaces in it, and more")), "admin_token"),
    Case("set-password-too-short", (*CREATE, *setv("oscar_password=1234567")), "oscar_password"),
    Case("set-password-too-long", (*CREATE, *setv("minio_password=" + "x" * 41)), "minio_password"),
    Case("set-dns-label-pattern", (*CREATE, *setv("cluster_name=Bad_Name")), "cluster_name"),
    Case("set-email-pattern", (*CREATE, *setv("cert_user_email=not-an-email")), "cert_user_email"),
    Case("set-domain-needs-email", (*CREATE, *setv("domain_name=example.org")), "cert_user_email"),
    Case("set-onedata-needs-token", (*CREATE, *setv("onedata_host=op.example.org")), "onedata_"),
    Case("set-registry-needs-user", (*CREATE, *setv("registry_server=reg.example.org:5000")), "registry_"),
    Case("set-image-braces", (*CREATE, *setv("image=ost://host/{id}")), "image"),
    Case("set-flavor-space", (*CREATE, *setv("fe_instance_type=big one")), "fe_instance_type"),
    Case("set-bucket-s3-rules", (*CREATE, *setv("minio_buckets=data,Bad_Bucket")), "minio_buckets"),
    Case("set-bucket-twice", (*CREATE, *setv("minio_buckets=data,data")), "minio_buckets"),
    Case("set-control-char-bell", (*CREATE, *setv("oscar_password=abc\x07defghij")), "oscar_password"),
    Case("set-control-char-newline", (*CREATE, *setv("cluster_name=ab\ncd")), "cluster_name"),
    Case("set-control-char-tab", (*CREATE, *setv("onedata_space=sp\tace")), "onedata_space"),
    Case("set-control-char-escape", (*CREATE, *setv("registry_user=us\x1b[31mer")), "registry_user"),
    Case("set-unknown-key", (*CREATE, *setv("flavour=large")), "flavour"),
    Case("set-unknown-key-case", (*CREATE, *setv("WN_NUM=2")), "WN_NUM"),
    Case("set-empty-key", (*CREATE, *setv("=3")), "--set"),
    Case("set-key-not-a-name", (*CREATE, *setv("9x=1")), "--set"),
    Case("set-render", ("template", "render", "oscar", "--site", "local-sim", *setv("fe_cpus=zero")), "fe_cpus"),
    # --- inputs files ------------------------------------------------------------------------------------------------
    Case("inputs-not-yaml", (*CREATE, "--inputs", "{d}/broken.yaml"), "--inputs"),
    Case("inputs-not-mapping", (*CREATE, "--inputs", "{d}/list.yaml"), "--inputs"),
    Case("inputs-unknown-key", (*CREATE, "--inputs", "{d}/inputs-unknown.yaml"), "wn_nmu"),
    Case("inputs-wrong-type", (*CREATE, "--inputs", "{d}/inputs-wrong-type.yaml"), "wn_num"),
    Case("inputs-non-string-key", (*CREATE, "--inputs", "{d}/inputs-int-key.yaml"), "--inputs"),
    Case("inputs-missing", (*CREATE, "--inputs", "{d}/nosuch.yaml"), "--inputs"),
    Case("inputs-not-utf8", (*CREATE, "--inputs", "{d}/latin1.yaml"), "--inputs"),
    Case("inputs-alias-bomb", (*CREATE, "--inputs", "{d}/inputs-bomb.yaml"), "--inputs"),
    Case("inputs-too-large", (*CREATE, "--inputs", "{d}/inputs-big.yaml"), "--inputs"),
    Case("inputs-too-deep", (*CREATE, "--inputs", "{d}/inputs-deep.yaml"), "--inputs"),
    Case("policy-alias-bomb", ("autoscale", "check", "{d}/policy-bomb.yaml"), "policy"),
    Case("config-alias-bomb", ("cluster", "list"), "config", {"PROVISION_CONFIG": "{d}/config-bomb.yaml"}),
    Case("edge-alias-bomb", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-bomb.yaml"), "--inventory"),
    # --- auth files --------------------------------------------------------------------------------------------------
    Case("auth-missing", ("--auth", "{d}/nosuch.dat", *CREATE), "auth file"),
    Case("auth-group-readable", ("--auth", "{d}/auth-0640.dat", *CREATE), "group or others"),
    Case("auth-world-writable", ("--auth", "{d}/auth-0602.dat", *CREATE), "group or others"),
    Case("auth-is-a-directory", ("--auth", "{d}", *CREATE), "directory"),
    Case("auth-item-without-equals", ("--auth", "{d}/auth-noeq.dat", *CREATE), "line 2"),
    Case("auth-line-without-type", ("--auth", "{d}/auth-notype.dat", *CREATE), "line 2"),
    Case("auth-unbalanced-quote", ("--auth", "{d}/auth-quote.dat", *CREATE), "line 2"),
    Case("auth-duplicate-key", ("--auth", "{d}/auth-dupkey.dat", *CREATE), "line 2"),
    Case("auth-no-im-line", ("--auth", "{d}/auth-noim.dat", *CREATE), "InfrastructureManager"),
    Case("auth-two-im-lines", ("--auth", "{d}/auth-twoim.dat", *CREATE), "InfrastructureManager"),
    Case("auth-im-line-without-user", ("--auth", "{d}/auth-nouser.dat", *CREATE), "username or a token"),
    Case("auth-unreadable-file-value", ("--auth", "{d}/auth-fileval.dat", *CREATE), "file("),
    Case("auth-failing-command", ("--auth", "{d}/auth-cmd.dat", *CREATE), "command false"),
    Case("auth-command-inner-quotes", ("--auth", "{d}/auth-cmdquotes.dat", *CREATE), "line 2: token: quotes inside"),
    # --- autoscale policies ------------------------------------------------------------------------------------------
    Case("policy-not-yaml", ("autoscale", "check", "{d}/broken.yaml"), "policy"),
    Case("policy-not-mapping", ("autoscale", "check", "{d}/list.yaml"), "policy"),
    Case("policy-version", ("autoscale", "check", "{d}/policy-version.yaml"), "version"),
    Case("policy-missing-min", ("autoscale", "check", "{d}/policy-nomin.yaml"), "min_workers"),
    Case("policy-max-below-min", ("autoscale", "check", "{d}/policy-maxmin.yaml"), "max_workers"),
    Case("policy-max-above-limit", ("autoscale", "check", "{d}/policy-max101.yaml"), "max_workers"),
    Case("policy-unknown-key", ("autoscale", "check", "{d}/policy-typo.yaml"), "max_wokers"),
    Case("policy-cooldown", ("autoscale", "check", "{d}/policy-cooldown.yaml"), "cooldown"),
    Case("policy-max-step", ("autoscale", "check", "{d}/policy-step.yaml"), "max_step"),
    Case("policy-schedules-not-list", ("autoscale", "check", "{d}/policy-schedmap.yaml"), "schedules"),
    Case("policy-bad-cron", ("autoscale", "check", "{d}/policy-cron.yaml"), "schedules[0].cron"),
    Case("policy-bad-timezone", ("autoscale", "check", "{d}/policy-tz.yaml"), "schedules[0].timezone"),
    Case("policy-schedule-no-bound", ("autoscale", "check", "{d}/policy-nobound.yaml"), "schedules[0]"),
    Case("policy-idle-after", ("autoscale", "check", "{d}/policy-idle.yaml"), "demand.idle_after"),
    Case("policy-pods-per-worker", ("autoscale", "check", "{d}/policy-ppw.yaml"), "demand.pods_per_worker"),
    Case("policy-demand-all-off", ("autoscale", "check", "{d}/policy-alloff.yaml"), "demand"),
    Case("policy-run-bad", ("autoscale", "run", "--once", "--policy", "{d}/policy-cron.yaml"), "schedules[0].cron"),
    Case(
        "policy-run-missing",
        ("autoscale", "run", "--once", "--cluster", "bad", "--policy", "{d}/nosuch.yaml"),
        "policy",
    ),
    # --- config files and PROVISION_* values -------------------------------------------------------------------------
    Case("config-unknown-key", ("cluster", "list"), "im_ulr", {"PROVISION_CONFIG": "{d}/config-typo.yaml"}),
    Case("config-bad-timeout", ("cluster", "list"), "read_timeout", {"PROVISION_CONFIG": "{d}/config-timeout.yaml"}),
    Case("config-negative", ("cluster", "list"), "connect_timeout", {"PROVISION_CONFIG": "{d}/config-neg.yaml"}),
    Case("config-bad-bool", ("cluster", "list"), "insecure", {"PROVISION_CONFIG": "{d}/config-bool.yaml"}),
    Case("config-log-level", ("cluster", "list"), "log_level", {"PROVISION_CONFIG": "{d}/config-loglevel.yaml"}),
    Case("config-sites-not-map", ("cluster", "list"), "sites", {"PROVISION_CONFIG": "{d}/config-sites.yaml"}),
    Case("config-not-yaml", ("cluster", "list"), "config", {"PROVISION_CONFIG": "{d}/broken.yaml"}),
    Case("config-not-mapping", ("cluster", "list"), "config", {"PROVISION_CONFIG": "{d}/list.yaml"}),
    Case("config-flag-missing", ("--config", "{d}/nosuch.yaml", "cluster", "list"), "config"),
    Case(
        "config-bad-site",
        ("cluster", "create", "bad", "-t", "oscar", "-s", "mysite"),
        "sites.mysite",
        {"PROVISION_CONFIG": "{d}/config-badsite.yaml"},
    ),
    Case("env-read-timeout", ("cluster", "list"), "PROVISION_READ_TIMEOUT", {"PROVISION_READ_TIMEOUT": "soon"}),
    Case("env-im-url", ("cluster", "list"), "PROVISION_IM_URL", {"PROVISION_IM_URL": "ftp://127.0.0.1:1"}),
    Case("env-insecure", ("cluster", "list"), "PROVISION_INSECURE", {"PROVISION_INSECURE": "perhaps"}),
    Case("flag-lock-timeout", ("--lock-timeout", "-1", "cluster", "list"), "--lock-timeout"),
    # --- numeric options: each refused as the command line is parsed (provisioner/cli/main.py NUMBER_RULES) --------
    Case("num-lock-timeout-nan", ("--lock-timeout", "nan", *CREATE), "--lock-timeout"),
    Case("num-create-timeout-negative", (*CREATE, "--timeout", "-5"), "--timeout"),
    Case("num-create-timeout-zero", (*CREATE, "--timeout", "0"), "--timeout"),
    Case("num-create-timeout-nan", (*CREATE, "--timeout", "nan"), "--timeout"),
    Case("num-create-timeout-inf", (*CREATE, "--timeout", "inf"), "--timeout"),
    Case("num-create-ssh-timeout", (*CREATE, "--install", "--ssh-timeout", "-1"), "--ssh-timeout"),
    Case("num-status-timeout", ("cluster", "status", "bad", "--wait", "--timeout", "-1"), "--timeout"),
    Case("num-scale-workers", ("cluster", "scale", "bad", "--workers", "-1"), "--workers"),
    Case("num-scale-timeout", ("cluster", "scale", "bad", "--workers", "2", "--timeout", "0"), "--timeout"),
    Case("num-reconfigure-timeout", ("cluster", "reconfigure", "bad", "--timeout", "-0.5"), "--timeout"),
    Case("num-install-ssh-timeout", ("cluster", "install", "bad", "--ssh-timeout", "0"), "--ssh-timeout"),
    Case("num-verify-timeout", ("cluster", "verify", "bad", "--timeout", "-3"), "--timeout"),
    Case(
        "num-edge-ssh-timeout",
        ("edge", "create", "edge-bad", "--inventory", "{d}/inv-ok.yaml", "--ssh-timeout", "nan"),
        "--ssh-timeout",
    ),
    Case("num-autoscale-interval", ("autoscale", "run", "--interval", "0"), "--interval"),
    Case("num-autoscale-concurrency", ("autoscale", "run", "--once", "--concurrency", "0"), "--concurrency"),
    Case("num-autoscale-last", ("autoscale", "explain", "bad", "--last", "0"), "--last"),
    Case("num-local-im-port-high", ("local-im", "start", "--port", "70000"), "--port"),
    Case("num-local-im-port-zero", ("local-im", "start", "--port", "0"), "--port"),
    # --- edge inventories --------------------------------------------------------------------------------------------
    Case("edge-not-yaml", ("edge", "create", "edge-bad", "--inventory", "{d}/broken.yaml"), "--inventory"),
    Case("edge-not-mapping", ("edge", "create", "edge-bad", "--inventory", "{d}/list.yaml"), "--inventory"),
    Case("edge-missing", ("edge", "create", "edge-bad", "--inventory", "{d}/nosuch.yaml"), "--inventory"),
    Case("edge-unknown-group", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-group.yaml"), "masters"),
    Case("edge-no-front", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-nofront.yaml"), "front"),
    Case("edge-all-not-map", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-all.yaml"), "all"),
    Case("edge-bad-hostname", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-hostname.yaml"), "front.hosts"),
    Case("edge-bad-port", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-port.yaml"), "ansible_port"),
    Case("edge-port-text", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-porttext.yaml"), "ansible_port"),
    Case("edge-bad-user", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-user.yaml"), "ansible_user"),
    Case("edge-bad-address", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-address.yaml"), "ansible_host"),
    Case("edge-bad-jump", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-jump.yaml"), "provision_jump"),
    Case(
        "edge-jump-self",
        ("edge", "create", "edge-bad", "--inventory", "{d}/inv-jumpself.yaml"),
        "wn.hosts.agent.provision_jump",
    ),
    Case(
        "edge-jump-chain",
        ("edge", "create", "edge-bad", "--inventory", "{d}/inv-jumpchain.yaml"),
        "wn.hosts.agent2.provision_jump: 'agent1' must name a host reached directly",
    ),
    Case("edge-key-missing", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-key.yaml"), "private_key_file"),
    Case("edge-key-open", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-keyopen.yaml"), "private_key_file"),
    Case("edge-host-in-both", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-both.yaml"), "both groups"),
    Case("edge-bad-set", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-ok.yaml", *setv("wn_num=x")), "wn_num"),
    Case(
        "edge-bad-bucket",
        ("edge", "create", "edge-bad", "--inventory", "{d}/inv-ok.yaml", *setv("minio_buckets=192.168.0.1")),
        "minio_buckets",
    ),
    Case(
        "edge-ssh-args",
        ("edge", "create", "edge-bad", "--inventory", "{d}/inv-sshargs.yaml"),
        "ansible_ssh_common_args",
    ),
    Case("edge-alias-pass", ("edge", "create", "edge-bad", "--inventory", "{d}/inv-alias.yaml"), "ansible_ssh_pass"),
]


def alias_bomb(key: str) -> str:
    """A "billion laughs" under ``key``: nine anchors, each ten of the one before (10**10 strings once walked)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 10)]
    return "\n".join([*lines, f"{key}: *a9"]) + "\n"


def write_corpus(d: Path, good_auth: Path) -> None:
    def put(name: str, text: str, mode: int = 0o600) -> None:
        path = d / name
        path.write_text(text)
        path.chmod(mode)

    def inv(doc: object, name: str) -> None:
        put(name, yaml.safe_dump(doc))

    put("broken.yaml", "key: [1, 2\n  other: {\n")
    put("list.yaml", "- 1\n- 2\n")
    put("not-tosca.yaml", "tosca_definitions_version: not_a_version\ntopology_template: 3\n")
    put("inputs-unknown.yaml", "wn_nmu: 2\n")
    put("inputs-wrong-type.yaml", "wn_num: [1, 2]\n")
    put("inputs-int-key.yaml", "1: 2\n")
    put("inputs-bomb.yaml", alias_bomb("wn_num"))
    put("inputs-big.yaml", "".join(f"key{i:07d}: {i}\n" for i in range(100_000)))  # 1.7 MB of keys
    put("inputs-deep.yaml", "wn_num: " + "[" * 100 + "]" * 100 + "\n")
    put("policy-bomb.yaml", alias_bomb("min_workers"))
    put("config-bomb.yaml", alias_bomb("sites"))
    put("inv-bomb.yaml", alias_bomb("front"))
    (d / "latin1.yaml").write_bytes("wn_num: 2 # caf\xe9\n".encode("latin-1"))

    im_line = good_auth.read_text().splitlines()[-1]
    put("auth-0640.dat", good_auth.read_text(), 0o640)
    put("auth-0602.dat", good_auth.read_text(), 0o602)
    put("auth-noeq.dat", f"{im_line}\nid = sim; type Dummy\n")
    put("auth-notype.dat", f"{im_line}\nid = sim; host = x\n")
    put("auth-quote.dat", f"{im_line}\nid = sim; type = 'Dummy\n")
    put("auth-dupkey.dat", f"{im_line}\nid = sim; type = Dummy; type = Dummy\n")
    put("auth-noim.dat", "id = sim; type = Dummy\n")
    put("auth-twoim.dat", f"{im_line}\n{im_line}\n")
    put("auth-nouser.dat", "id = sim; type = Dummy\nid = im; type = InfrastructureManager; password = abcdefgh\n")
    put("auth-fileval.dat", f"{im_line}\nid = ost; type = OpenStack; password = file({d}/nosuch-pass)\n")
    put("auth-cmd.dat", f"{im_line}\nid = egi; type = EGI; token = command(false)\n")
    put("auth-cmdquotes.dat", f'{im_line}\nid = egi; type = EGI; token = command(sh -c "echo a; echo b")\n')

    base = {"version": 1, "min_workers": 1, "max_workers": 5}
    policies: dict[str, object] = {
        "policy-version": {**base, "version": 2},
        "policy-nomin": {"version": 1, "max_workers": 5},
        "policy-maxmin": {**base, "min_workers": 6},
        "policy-max101": {**base, "max_workers": 101},
        "policy-typo": {**base, "max_wokers": 3},
        "policy-cooldown": {**base, "cooldown": "5 minutes"},
        "policy-step": {**base, "max_step": 0},
        "policy-schedmap": {**base, "schedules": {"name": "x"}},
        "policy-cron": {**base, "schedules": [{"name": "a", "cron": "61 * * * *", "timezone": "UTC", "min": 2}]},
        "policy-tz": {**base, "schedules": [{"name": "a", "cron": "0 8 * * *", "timezone": "Mars/Olympus", "min": 2}]},
        "policy-nobound": {**base, "schedules": [{"name": "a", "cron": "0 8 * * *", "timezone": "UTC"}]},
        "policy-idle": {**base, "demand": {"idle_after": "15 mins"}},
        "policy-ppw": {**base, "demand": {"pods_per_worker": 0}},
        "policy-alloff": {**base, "demand": {"pending_pods": False, "oscar_jobs": False, "idle_after": "off"}},
    }
    for name, doc in policies.items():
        put(f"{name}.yaml", yaml.safe_dump(doc))

    put("config-typo.yaml", "im_ulr: http://127.0.0.1:1\n")
    put("config-timeout.yaml", "read_timeout: fast\n")
    put("config-neg.yaml", "connect_timeout: -1\n")
    put("config-bool.yaml", "insecure: maybe\n")
    put("config-loglevel.yaml", "log_level: LOUD\n")
    put("config-sites.yaml", "sites: [1, 2]\n")
    put("config-badsite.yaml", yaml.safe_dump({"sites": {"mysite": {"kind": "egi", "imagee": "x"}}}))

    key = d / "key"
    key.write_text("not really a key\n")
    key.chmod(0o600)
    open_key = d / "key-open"
    open_key.write_text("not really a key\n")
    open_key.chmod(0o644)
    front = {"front": {"hosts": {"server": {"ansible_host": "127.0.0.9"}}}}
    inv({**front, "masters": {"hosts": {"m": {}}}}, "inv-group.yaml")
    inv({"wn": {"hosts": {"agent": {"ansible_host": "127.0.0.9"}}}}, "inv-nofront.yaml")
    inv({"all": ["front", "wn"]}, "inv-all.yaml")
    inv({"front": {"hosts": {"bad host!": {}}}}, "inv-hostname.yaml")
    inv({"front": {"hosts": {"server": {"ansible_port": 70000}}}}, "inv-port.yaml")
    inv({"front": {"hosts": {"server": {"ansible_port": "ssh"}}}}, "inv-porttext.yaml")
    inv({"front": {"hosts": {"server": {"ansible_user": "Root User"}}}}, "inv-user.yaml")
    inv({"front": {"hosts": {"server": {"ansible_host": "bad host name!"}}}}, "inv-address.yaml")
    inv({**front, "wn": {"hosts": {"agent": {"provision_jump": "nosuch"}}}}, "inv-jump.yaml")
    inv({**front, "wn": {"hosts": {"agent": {"provision_jump": "agent"}}}}, "inv-jumpself.yaml")
    chain = {"agent1": {"provision_jump": "server"}, "agent2": {"provision_jump": "agent1"}}
    inv({**front, "wn": {"hosts": chain}}, "inv-jumpchain.yaml")
    inv({"front": {"hosts": {"server": {"ansible_ssh_private_key_file": str(d / "nokey")}}}}, "inv-key.yaml")
    inv({"front": {"hosts": {"server": {"ansible_ssh_private_key_file": str(open_key)}}}}, "inv-keyopen.yaml")
    inv({**front, "wn": {"hosts": {"server": {}}}}, "inv-both.yaml")
    inv({"front": {"hosts": {"server": {"ansible_ssh_private_key_file": str(key)}}}}, "inv-ok.yaml")
    inv(
        {"front": {"hosts": {"server": {"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"}}}}, "inv-sshargs.yaml"
    )
    inv({"front": {"hosts": {"server": {"ansible_ssh_pass": "x"}}}}, "inv-alias.yaml")


@dataclass
class Corpus:
    cli: CLI
    proxy: FaultProxy
    dir: Path
    auth: Path
    im_before: set[str]


@pytest.fixture(scope="module")
def corpus(local_im: RunningIM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    base = tmp_path_factory.mktemp("corpus")
    d = base / "files"
    d.mkdir()
    auth = base / "auth.dat"
    auth.write_text(local_im.auth_file.read_text())
    auth.chmod(0o600)
    write_corpus(d, auth)
    proxy = FaultProxy(local_im.url).start()
    cli = CLI(base / "home", proxy.url, auth)
    yield Corpus(cli, proxy, d, auth, infras(local_im))
    proxy.stop()


def fill(text: str, c: Corpus) -> str:
    return text.replace("{d}", str(c.dir)).replace("{auth}", str(c.auth))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_with_one_line(case: Case, corpus: Corpus) -> None:
    corpus.proxy.seen.clear()
    env = {k: fill(v, corpus) for k, v in case.env.items()}
    # In process (as the console entry point runs it): no interpreter start-up per case. The subprocess path is the
    # one the cases below and every other CLI test take.
    result = corpus.cli.in_process(*(fill(a, corpus) for a in case.args), env=env)
    lines = result.stderr.rstrip("\n").split("\n")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(lines) in (1, 2), result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert case.field in lines[0], f"the error line does not name {case.field!r}: {lines[0]}"
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), result.stderr
    assert all(ch == "\t" or ch >= " " for ch in lines[0]), f"control character in the error line: {lines[0]!r}"
    assert result.stdout == ""
    assert corpus.proxy.seen == [], "nothing may reach IM"


def test_the_corpus_left_im_and_the_registry_untouched(corpus: Corpus, local_im: RunningIM) -> None:
    assert len(CASES) >= 50
    assert infras(local_im) == corpus.im_before
    assert corpus.cli.json("cluster", "list") == []


def test_refused_auth_file_leaves_no_secrets_behind(corpus: Corpus) -> None:
    result = corpus.cli(
        "--auth", str(corpus.dir / "nosuch.dat"), "cluster", "create", "leftover", "-t", "oscar", "-s", "local-sim"
    )
    assert result.returncode == 2
    assert "nosuch.dat" in result.stderr.splitlines()[0]
    assert not (corpus.cli.home / "secrets" / "leftover.yaml").exists()


def test_auth_line_of_unknown_type_is_refused_before_im(corpus: Corpus, local_im: RunningIM) -> None:
    bad = corpus.dir / "auth-badtype.dat"
    bad.write_text(f"{corpus.auth.read_text().splitlines()[-1]}\nid = sim; type = NoSuchCloud\n")
    bad.chmod(0o600)
    before = infras(local_im)
    corpus.proxy.seen.clear()
    # --no-wait: with the bug, the create would otherwise wait for an infrastructure that never launches.
    result = corpus.cli("--auth", str(bad), *CREATE, "--no-wait")
    try:
        assert result.returncode == 2, (result.returncode, result.stderr)
        assert "unknown type 'NoSuchCloud'" in result.stderr.splitlines()[0]
        assert "Traceback" not in result.stderr
        assert not any(s.method == "POST" for s in corpus.proxy.seen)
    finally:
        with local_im.client() as client:
            for infra in set(client.list_infrastructures()) - before:
                client.destroy(infra, force=True)
        corpus.cli("cluster", "destroy", "bad", "--yes")
