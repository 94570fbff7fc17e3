"""The deploy/ files: the CronJob is valid Kubernetes (offline schema) and never overlaps; the systemd units verify."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def test_cronjob_manifest_is_valid_and_forbids_overlap() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "autoscale-cronjob.yaml").read_text()))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["CronJob", "PersistentVolumeClaim"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.32.0", strict=True)
    cron = docs[0]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["autoscale", "run", "--once"]
    assert {e["name"] for e in container["env"]} >= {"PROVISION_HOME", "PROVISION_IM_URL", "PROVISION_AUTH_FILE"}
    # The state URL (a PostgreSQL password may be in it) comes from a Secret, never from the manifest; optional.
    (state_url,) = [e for e in container["env"] if e["name"] == "PROVISION_STATE_URL"]
    assert "value" not in state_url
    assert state_url["valueFrom"]["secretKeyRef"] == {"name": "provision-state", "key": "url", "optional": True}


def test_cronjob_validation_catches_a_broken_manifest() -> None:
    doc = next(yaml.safe_load_all((DEPLOY / "kubernetes" / "autoscale-cronjob.yaml").read_text()))
    doc["spec"]["concurrencyPolicy"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.32.0", strict=True)


def _verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify(tmp_path: Path) -> None:
    service = (DEPLOY / "systemd" / "provision-autoscale.service").read_text()
    assert "ExecStart=/usr/local/bin/provision autoscale run --once" in service
    assert "Type=oneshot" in service
    # The state URL comes from the environment file (0600), never from the unit; the example names it.
    assert (
        "EnvironmentFile=/etc/provision/autoscale.env" in service and "postgresql://" not in service.split("[Unit]")[1]
    )
    example = (DEPLOY / "systemd" / "autoscale.env.example").read_text()
    assert "PROVISION_STATE_URL=postgresql://" in example
    # verify checks that ExecStart exists and that the environment file can be read: point both at this machine.
    local = service.replace("/usr/local/bin/provision", str(Path(sys.executable).parent / "provision"))
    local = local.replace("EnvironmentFile=/etc/", "EnvironmentFile=-/etc/")
    (tmp_path / "provision-autoscale.service").write_text(local)
    shutil.copy(DEPLOY / "systemd" / "provision-autoscale.timer", tmp_path)
    result = _verify([tmp_path / "provision-autoscale.service", tmp_path / "provision-autoscale.timer"])
    # systemd-analyze exits 0 on many problems and only says so on stderr: both must be clean.
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    (tmp_path / "provision-autoscale.service").write_text(local.replace("Type=oneshot", "Type=bogus"))
    broken = _verify([tmp_path / "provision-autoscale.service"])
    assert "bogus" in broken.stderr
