"""The lifecycle's rules against an in-memory IM (tests/fakeim.py behind the ``IMClient`` session seam): create and
wait, resume, adopt a create whose answer was lost, scale (which workers go), destroy verified against IM's list.
No IM process, no sockets, a fake clock: these run in milliseconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import IMUnreachable, OperationFailed
from provisioner.im import IMClient, RetryPolicy
from provisioner.lifecycle import Lifecycle
from provisioner.settings import Settings
from provisioner.state import Phase, Store
from tests.fakeim import URL, FakeIM


class Auth:
    def header(self) -> str:
        return "id = sim; type = Dummy\\nid = im; type = InfrastructureManager; username = u; password = p"

    def refresh(self) -> bool:
        return False


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def im() -> FakeIM:
    return FakeIM(settle=2)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lc(tmp_path: Path, im: FakeIM, clock: Clock) -> Iterator[Lifecycle]:
    lifecycle = Lifecycle(
        Settings(home=tmp_path / "home", poll_initial=0.2),
        # No retries: a planned fault is met once (the retry rules are the IM client's own tests).
        client_factory=lambda url: IMClient(url, Auth(), transport=im, retry=RetryPolicy.none()),
        default_im_url=URL,
        clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.5,
    )
    yield lifecycle
    lifecycle.close()


def phases(lc: Lifecycle, name: str) -> list[str]:
    with Store.open(lc.home) as store:
        return [str(e.phase) for e in store.journal(name)]


def create(lc: Lifecycle, name: str = "c1", workers: int = 2) -> str:
    view = lc.create(name, template="oscar", site="local-sim", inputs={"wn_num": str(workers)}, timeout=60)
    assert view.state == "configured" and view.infra_id is not None
    return view.infra_id


def test_create_waits_for_configured_and_records_the_vms(lc: Lifecycle, im: FakeIM, clock: Clock) -> None:
    infra_id = create(lc)
    assert [m for m, p in im.requests if m == "POST"] == ["POST"]
    assert clock.slept and clock.slept[0] == pytest.approx(0.2, rel=0.5)  # the settings' first interval
    rec = lc.record("c1")
    assert (rec.infra_id, rec.state, rec.workers) == (infra_id, "configured", 2)
    assert sorted((v["id"], v["role"]) for v in rec.extra["vms"]) == [("0", "front"), ("1", "wn"), ("2", "wn")]
    assert phases(lc, "c1")[:3] == [Phase.RENDERED, Phase.SUBMITTING, Phase.INFRA_ID_KNOWN]


def test_create_wait_reads_the_vms_the_last_poll_named_and_nothing_twice(lc: Lifecycle, im: FakeIM) -> None:
    infra_id = create(lc)
    inf = f"/infrastructures/{infra_id}"
    vms = [("GET", f"{inf}/vms/{vm}") for vm in ("0", "1", "2")]
    # Polls until configured (the fake settles after 2), then each VM once: no listing, no state read again.
    assert im.requests == [("POST", "/infrastructures"), *[("GET", f"{inf}/state")] * 3, *vms]
    im.requests.clear()
    view = lc.status("c1")
    assert im.requests == [("GET", f"{inf}/state"), *vms]
    assert [(v.id, v.role) for v in view.vms] == [("0", "front"), ("1", "wn"), ("2", "wn")]
    im.requests.clear()
    assert lc.outputs_of(view) == {}
    assert im.requests == [("GET", f"{inf}/outputs")]
    # One client (one session, one connection) per endpoint, however its URL is written.
    assert lc.client(URL + "/") is lc.client(URL) is lc.client()


def test_create_again_resumes_and_posts_nothing(lc: Lifecycle, im: FakeIM) -> None:
    infra_id = create(lc)
    im.requests.clear()
    assert create(lc) == infra_id
    assert [m for m, _ in im.requests if m == "POST"] == []
    assert list(im.infras) == [infra_id]


def test_a_name_used_before_is_created_without_searching_im(lc: Lifecycle, im: FakeIM) -> None:
    """The journal keeps a destroyed cluster's SUBMITTING step; a new cluster of that name is a new deployment,
    POSTed at once: no list of IM's infrastructures, no TOSCA read of each (the search for a lost answer)."""
    first = create(lc)
    lc.destroy("c1")
    im.requests.clear()
    second = create(lc)
    assert second != first
    assert [r for r in im.requests if r in (("GET", "/infrastructures"),) or r[1].endswith("/tosca")] == []
    assert [m for m, _ in im.requests].count("POST") == 1
    assert [str(e) for e in phases(lc, "c1")].count(str(Phase.SUBMITTING)) == 2


def test_a_create_whose_answer_is_lost_is_adopted_not_repeated(lc: Lifecycle, im: FakeIM) -> None:
    im.lose_answer("POST")
    infra_id = create(lc)
    assert list(im.infras) == [infra_id]
    assert [m for m, _ in im.requests].count("POST") == 1
    assert Phase.ADOPTED in phases(lc, "c1")


def test_scale_down_removes_failed_workers_first_then_the_newest(lc: Lifecycle, im: FakeIM) -> None:
    infra_id = create(lc, workers=4)
    im.infras[infra_id].vms["2"].state = "failed"
    lc.scale("c1", workers=2, timeout=60)
    assert im.workers(infra_id) == ["1", "3"]
    with Store.open(lc.home) as store:
        scaled = store.last_of_phase("c1", Phase.SCALED)
    assert scaled is not None and scaled.detail["removed"] == ["2", "4"]


def test_a_named_worker_is_replaced_at_the_same_count(lc: Lifecycle, im: FakeIM) -> None:
    infra_id = create(lc, workers=2)
    im.requests.clear()
    view = lc.scale("c1", workers=2, remove=["1"], timeout=60)
    assert im.workers(infra_id) == ["2", "3"] and view.workers == 2
    assert [p for m, p in im.requests if m == "POST"] == [f"/infrastructures/{infra_id}"] * 2  # shrink, then grow


def test_tracked_vms_cost_one_request_while_the_vms_stay_the_same(lc: Lifecycle, im: FakeIM) -> None:
    infra_id = create(lc)
    im.requests.clear()
    assert [v.id for v in lc.tracked_vms("c1")] == ["0", "1", "2"]
    assert im.requests == [("GET", f"/infrastructures/{infra_id}/state")]
    im.infras[infra_id].add("wn")  # a VM the registry does not know yet: one full read, and the map is refreshed
    im.requests.clear()
    assert [v.id for v in lc.tracked_vms("c1")] == ["0", "1", "2", "3"]
    assert len(im.requests) > 1
    im.requests.clear()
    assert len(lc.tracked_vms("c1")) == 4 and len(im.requests) == 1


def test_destroy_deletes_again_until_im_stops_listing_it(lc: Lifecycle, im: FakeIM) -> None:
    infra_id = create(lc)
    im.resurrect(2)  # IM 2.0.0 can list a deleted infrastructure again
    result = lc.destroy("c1")
    assert result.infra_id == infra_id and not im.infras
    assert [m for m, _ in im.requests].count("DELETE") >= 2
    assert phases(lc, "c1")[-2:] == [Phase.DESTROYING, Phase.DESTROYED]


def test_destroy_that_never_sticks_fails_and_keeps_the_record(lc: Lifecycle, im: FakeIM) -> None:
    create(lc)
    im.resurrect(100)
    with pytest.raises(OperationFailed, match="still lists infrastructure"):
        lc.destroy("c1", attempts=3)
    assert lc.record("c1").infra_id is not None
    assert phases(lc, "c1")[-1] == Phase.DESTROYING


def test_an_unreachable_im_during_create_says_how_to_resume(lc: Lifecycle, im: FakeIM) -> None:
    im.lose_answer("POST")
    im.lose_answer("GET")  # and the search for it by deployment id fails too
    with pytest.raises(IMUnreachable) as err:
        create(lc)
    assert "run the same command again" in (err.value.hint or "")
    assert len(im.infras) == 1  # IM did create it: the next run adopts it
    im.requests.clear()
    infra_id = create(lc)
    assert list(im.infras) == [infra_id] and ("POST", "/infrastructures") not in im.requests
