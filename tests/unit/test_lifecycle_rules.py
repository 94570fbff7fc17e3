"""The lifecycle's pure rules: ``vms_from_state`` (the live VMs from IM's one-request state answer and the
registry's VM map) and ``plan_scale`` (which workers go, and the IM updates)."""

from __future__ import annotations

from provisioner.lifecycle import plan_scale, vms_from_state
from provisioner.model import Role

RECORDED = [
    {"id": "0", "role": "front", "state": "configured", "private_ip": "10.0.0.1", "public_ip": "192.0.2.1"},
    {"id": "1", "role": "wn", "state": "configured", "private_ip": "10.0.0.2", "public_ip": None},
    {"id": "2", "role": "wn", "state": "running", "private_ip": "10.0.0.3", "public_ip": None},
]


def test_same_vm_ids_take_roles_and_addresses_from_the_map_and_states_from_im() -> None:
    vms = vms_from_state({"2": "failed", "0": "configured", "1": "unconfigured"}, RECORDED)
    assert vms is not None
    assert [(v.id, Role.of(v.name), v.state) for v in vms] == [
        ("0", Role.FRONT, "configured"),
        ("1", Role.WORKER, "unconfigured"),
        ("2", Role.WORKER, "failed"),  # IM's state now, not the map's
    ]
    assert (vms[0].private_ip, vms[0].public_ip) == ("10.0.0.1", "192.0.2.1")
    assert (vms[1].private_ip, vms[1].public_ip) == ("10.0.0.2", None)
    assert all(v.system == {} and v.credentials.password is None for v in vms)


def test_ids_are_ordered_numerically() -> None:
    recorded = [{"id": str(i), "role": "wn"} for i in (10, 9, 2, 0)]
    vms = vms_from_state({str(i): "configured" for i in (0, 2, 9, 10)}, recorded)
    assert vms is not None and [v.id for v in vms] == ["0", "2", "9", "10"]


def test_a_deleting_vm_is_not_live_and_does_not_need_a_full_read() -> None:
    vms = vms_from_state({"0": "configured", "1": "configured", "2": "running", "3": "deleting"}, RECORDED)
    assert vms is not None and [v.id for v in vms] == ["0", "1", "2"]


def test_a_changed_set_of_vms_asks_for_a_full_read() -> None:
    assert vms_from_state({"0": "configured", "1": "configured"}, RECORDED) is None  # one gone
    assert vms_from_state({"0": "c", "1": "c", "2": "c", "3": "pending"}, RECORDED) is None  # one new
    assert vms_from_state({"0": "configured"}, []) is None  # nothing recorded yet
    assert vms_from_state({}, []) == []  # nothing in either


def test_a_malformed_map_asks_for_a_full_read() -> None:
    assert vms_from_state({"0": "configured"}, [{"role": "front"}]) is None
    assert vms_from_state({"0": "configured"}, ["0"]) is None  # type: ignore[list-item]


# --- plan_scale: which workers go, and the IM updates (pure) -----------------------------------------------------

LIVE = [("1", "configured"), ("2", "failed"), ("3", "configured"), ("4", "configured")]


def test_growing_is_one_update_and_removes_nothing() -> None:
    plan = plan_scale(LIVE, 6, [])
    assert (plan.going, plan.steps) == ([], [(6, [])])


def test_shrinking_takes_failed_workers_then_the_newest() -> None:
    assert plan_scale(LIVE, 3, []).going == ["2"]
    assert plan_scale(LIVE, 2, []).going == ["2", "4"]
    assert plan_scale(LIVE, 0, []).steps == [(0, ["2", "4", "3", "1"])]


def test_named_workers_go_first_and_count() -> None:
    plan = plan_scale(LIVE, 2, ["1"])
    assert plan.going == ["1", "2"] and plan.steps == [(2, ["1", "2"])]


def test_a_named_worker_at_the_same_count_is_replaced() -> None:
    plan = plan_scale(LIVE, 4, ["3"])
    assert plan.steps == [(3, ["3"]), (4, [])]


def test_the_same_count_and_nothing_named_changes_nothing() -> None:
    assert plan_scale(LIVE, 4, []).steps == []
    assert plan_scale([], 0, []).steps == []


def test_ids_sort_as_numbers_not_text() -> None:
    live = [(str(i), "configured") for i in (2, 9, 10)]
    assert plan_scale(live, 2, []).going == ["10"]
