"""Following a file through a workflow (pure): which stage an object starts, which new job is whose."""

from __future__ import annotations

from provisioner.workflow.fdl import Fdl, Stage, parse_fdl
from provisioner.workflow.trace import Trace, job_seconds, lambda_invocations, new_jobs, readers_of

FDL = """\
functions:
  oscar:
  - edge:
      name: split
      image: alpine
      input: [{storage_provider: minio, path: inbox/raw}]
      output:
      - {storage_provider: minio.cloud, path: work/in, suffix: [jpg]}
      - {storage_provider: minio.cloud, path: work/notes}
  - cloud:
      name: detect
      image: alpine
      input: [{storage_provider: minio, path: work/in, suffix: [jpg]}]
      output: [{storage_provider: minio, path: results}]
  - cloud:
      name: thumbs
      image: alpine
      input: [{storage_provider: minio, path: work/in, prefix: [big-]}]
      output: [{storage_provider: minio, path: thumbs}]
"""


def fdl() -> Fdl:
    return parse_fdl(FDL, "wf.yaml", known_clusters=frozenset({"cloud"}))


def names(stages: list[Stage]) -> list[str]:
    return [stage.label for stage in stages]


def test_an_object_starts_the_stages_whose_input_holds_it() -> None:
    doc = fdl()
    cloud = ("minio", "cloud")
    assert names(readers_of(doc, cloud, "work", "in/big-cat.jpg")) == ["cloud/detect", "cloud/thumbs"]
    assert names(readers_of(doc, cloud, "work", "in/cat.jpg")) == ["cloud/detect"]
    assert names(readers_of(doc, cloud, "work", "in/big-cat.png")) == ["cloud/thumbs"]
    assert names(readers_of(doc, cloud, "work", "in/cat.png")) == []
    assert names(readers_of(doc, cloud, "work", "notes/cat.txt")) == []  # another folder of the same bucket
    assert names(readers_of(doc, cloud, "work", "inbox/cat.jpg")) == []  # "in" is a folder, not a text prefix
    assert names(readers_of(doc, ("minio", "edge"), "inbox", "raw/a.tif")) == ["edge/split"]
    assert names(readers_of(doc, ("minio", "edge"), "work", "in/cat.jpg")) == []  # the same path on another MinIO


def test_new_jobs_are_the_unknown_ones_oldest_first() -> None:
    now = {
        "old": {"status": "Succeeded", "creation_time": "2026-12-05T10:00:00Z"},
        "b": {"status": "Pending", "creation_time": "2026-12-05T10:00:02Z"},
        "a": {"status": "Running", "creation_time": "2026-12-05T10:00:01Z"},
    }
    assert [name for name, _ in new_jobs({"old"}, now)] == ["a", "b"]


def test_jobs_are_matched_to_arrivals_in_order_and_followed_to_the_end() -> None:
    trace = Trace(fdl())
    (first,) = trace.arrive(("minio", "edge"), "inbox", "raw/a.tif")
    assert trace.waiting() == [first] and first.state == "waiting"

    assert (
        trace.see_jobs(("edge", "split"), [("j1", {"status": "Running", "start_time": "2026-12-05T10:00:01Z"})], 0.5)
        == []
    )
    assert (first.job, first.state, first.seen_at) == ("j1", "Running", 0.5)
    done = trace.see_jobs(
        ("edge", "split"),
        [("j1", {"status": "Succeeded", "start_time": "2026-12-05T10:00:01Z", "finish_time": "2026-12-05T10:00:04Z"})],
        1.5,
    )
    assert done == [first] and first.done_at == 1.5 and first.seconds == 3.0
    assert trace.see_jobs(("edge", "split"), [("j1", {"status": "Succeeded"})], 2.0) == []  # reported once

    two = trace.arrive(("minio", "cloud"), "work", "in/big-cat.jpg")
    assert [step.stage for step in two] == [("cloud", "detect"), ("cloud", "thumbs")]
    assert trace.arrive(("minio", "cloud"), "work", "notes/readme.txt") == []
    assert trace.finals == [(("minio", "cloud"), "work", "notes/readme.txt")]
    # A job of another stage, or a second new job with no object waiting for it, is not this trace's.
    trace.see_jobs(("cloud", "detect"), [("d1", {"status": "Failed"}), ("d2", {"status": "Running"})], 3.0)
    assert [s.job for s in trace.steps] == ["j1", "d1", None]
    assert trace.failed()[0].job == "d1"
    assert trace.doc()["final_outputs"] == ["minio.cloud:work/notes/readme.txt"]


def test_job_seconds_needs_both_times() -> None:
    assert job_seconds("2026-12-05T10:00:00Z", "2026-12-05T10:01:30Z") == 90.0
    assert job_seconds(None, "2026-12-05T10:01:30Z") is None
    assert job_seconds("yesterday", "2026-12-05T10:01:30Z") is None


def test_lambda_invocations_from_cloudwatch_lines() -> None:
    lines = [
        "START RequestId: 1a2b-3c Version: $LATEST",
        "processing in/face.txt",
        "END RequestId: 1a2b-3c",
        "REPORT RequestId: 1a2b-3c\tDuration: 1250.50 ms\tBilled Duration: 1251 ms",
        "START RequestId: 4d5e-6f Version: $LATEST",
        '{"errorMessage": "model missing", "errorType": "Exception"}',
        "END RequestId: 4d5e-6f",
        "REPORT RequestId: 4d5e-6f\tDuration: 3.00 ms",
        "START RequestId: 7a8b-9c Version: $LATEST",
    ]
    assert lambda_invocations(lines) == {
        "1a2b-3c": {"status": "Succeeded", "seconds": 1.2505},
        "4d5e-6f": {"status": "Failed", "seconds": 0.003},
        "7a8b-9c": {"status": "Running"},
    }
    assert lambda_invocations(["2026-12-05 task timed out", "nothing here"]) == {}
