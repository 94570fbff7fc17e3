"""The Lambda driver (provisioner.aws.lambda_) and S3's notifications to Lambda (S3Store), against moto's server on
loopback (tests/awslab.py): image functions from moto's ECR, what is sent on update, S3 permissions, bucket
triggers kept beside other configurations, an object written reaching a function, errors."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest

from provisioner.aws.lambda_ import (
    AwsAccess,
    FunctionSpec,
    LambdaClient,
    is_ecr_image_uri,
    is_image_uri,
    s3_statement_id,
    spec_changes,
)
from provisioner.aws.s3 import S3Access, S3Store
from provisioner.errors import (
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    AwsAuthRefused,
    AwsError,
    InputError,
    OperationTimeout,
    StorageAuthRefused,
    StorageError,
)
from provisioner.redact import mask
from tests import awslab
from tests.awslab import MotoAws


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoAws]:
    # Nothing from this machine's AWS setup: no profile, no instance metadata, no endpoint from the environment.
    nowhere = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA", "AWS_ACCESS_KEY_ID"):
            env.delenv(name, raising=False)
        for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
            env.delenv(name, raising=False)
        env.setenv("AWS_CONFIG_FILE", str(nowhere))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        with awslab.moto_aws() as running:
            yield running


@pytest.fixture(scope="module")
def role(lab: MotoAws) -> str:
    return awslab.make_role(lab, "stage-role")


@pytest.fixture
def aws(lab: MotoAws) -> Iterator[LambdaClient]:
    client = LambdaClient(lab.access, timeout=10)
    yield client
    client.close()


@pytest.fixture
def s3(lab: MotoAws) -> Iterator[S3Store]:
    store = S3Store(lab.s3_access, timeout=10)
    yield store
    store.close()


def _spec(name: str, image: str, role: str, **changes: Any) -> FunctionSpec:
    return FunctionSpec(name=name, image_uri=image, role=role, **changes)


def _lambda_calls(sent: list[awslab.Sent]) -> list[tuple[str, str]]:
    return [(item.method, item.path) for item in sent if item.path.startswith("/2015-03-31/")]


# --- functions ----------------------------------------------------------------------------------------------------


def test_create_then_active_get_and_invoke(lab: MotoAws, aws: LambdaClient, role: str) -> None:
    image = awslab.push_image(lab, "stage-a", "v1")
    spec = _spec("stage-a", image, role, environment={"STORAGE": "s3"}, description="first stage")

    assert aws.get_function("stage-a") is None
    created = aws.create_function(spec)
    assert created["FunctionName"] == "stage-a" and created["PackageType"] == "Image"
    assert created["ImageUri"] == image

    active = aws.wait_active("stage-a", timeout=20)
    assert active["State"] == "Active" and active["LastUpdateStatus"] == "Successful"

    found = aws.get_function("stage-a")
    assert found is not None
    assert found["ImageUri"] == image
    assert (found["MemorySize"], found["Timeout"], found["Architectures"]) == (512, 300, ["x86_64"])
    assert found["Environment"] == {"Variables": {"STORAGE": "s3"}}
    assert found["Description"] == "first stage" and found["Role"] == role
    assert found["FunctionArn"] == f"arn:aws:lambda:{awslab.REGION}:{awslab.ACCOUNT}:function:stage-a"
    assert spec_changes(spec, found) == ()

    # moto's Docker-less Lambda answers the payload it was given.
    assert aws.invoke("stage-a", b'{"bucket": "in"}') == b'{"bucket": "in"}'


def test_an_image_missing_from_the_registry_is_refused(lab: MotoAws, aws: LambdaClient, role: str) -> None:
    image = awslab.push_image(lab, "stage-b", "v1").replace(":v1", ":nope")
    with pytest.raises(AwsError) as caught:
        aws.create_function(_spec("stage-b", image, role))
    assert caught.value.code == "ImageNotFoundException"
    assert caught.value.message.startswith(f"Lambda CreateFunction of function stage-b on {lab.url}: ")
    assert "\n" not in caught.value.message


def test_update_sends_only_what_differs(lab: MotoAws, aws: LambdaClient, role: str) -> None:
    v1, v2 = awslab.push_image(lab, "stage-c", "v1"), awslab.push_image(lab, "stage-c", "v2")
    spec = _spec("stage-c", v1, role, environment={"A": "1"})
    aws.create_function(spec)
    current = aws.wait_active("stage-c")
    first_sha = current["CodeSha256"]

    with lab.sent() as sent:
        assert aws.update_function(spec, current) == current
    assert sent == []

    more_memory = _spec("stage-c", v1, role, environment={"A": "1"}, memory=1024)
    assert spec_changes(more_memory, current) == ("memory",)
    with lab.sent() as sent:
        answer = aws.update_function(more_memory, current)
    assert _lambda_calls(sent) == [("PUT", "/2015-03-31/functions/stage-c/configuration")]
    assert sent[0].body == {"MemorySize": 1024}
    assert answer["MemorySize"] == 1024 and answer["ImageUri"] == v1

    current = aws.wait_active("stage-c")
    new_image = _spec("stage-c", v2, role, environment={"A": "1"}, memory=1024)
    assert spec_changes(new_image, current) == ("image",)
    with lab.sent() as sent:
        aws.update_function(new_image, current)
    assert _lambda_calls(sent) == [("PUT", "/2015-03-31/functions/stage-c/code")]
    assert sent[0].body == {"ImageUri": v2, "Architectures": ["x86_64"]}
    current = aws.wait_active("stage-c")
    assert current["ImageUri"] == v2 and current["MemorySize"] == 1024
    assert current["CodeSha256"] != first_sha  # moto's ECR digest of v2

    both = _spec("stage-c", v1, role, environment={"A": "2", "B": "x"}, memory=1024, timeout=60)
    assert spec_changes(both, current) == ("image", "timeout", "environment")
    with lab.sent() as sent:
        aws.update_function(both, current)
    assert _lambda_calls(sent) == [
        ("PUT", "/2015-03-31/functions/stage-c/code"),
        ("GET", "/2015-03-31/functions/stage-c"),  # waiting for the code update to finish
        ("PUT", "/2015-03-31/functions/stage-c/configuration"),
    ]
    assert sent[2].body == {"Timeout": 60, "Environment": {"Variables": {"A": "2", "B": "x"}}}
    final = aws.get_function("stage-c")
    assert final is not None and spec_changes(both, final) == ()


def test_allow_s3_twice_adds_one_statement(lab: MotoAws, aws: LambdaClient, role: str) -> None:
    aws.create_function(_spec("stage-d", awslab.push_image(lab, "stage-d", "v1"), role))
    aws.allow_s3("stage-d", "bucket-d")
    with lab.sent() as sent:
        aws.allow_s3("stage-d", "bucket-d")
    assert _lambda_calls(sent) == [("GET", "/2015-03-31/functions/stage-d/policy")]  # moto would add a duplicate

    policy = lab.client("lambda").get_policy(FunctionName="stage-d")["Policy"]
    statements = json.loads(policy)["Statement"]
    assert len(statements) == 1
    assert statements[0]["Sid"] == s3_statement_id("bucket-d") == "s3-bucket-d"
    assert statements[0]["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statements[0]["Condition"]["ArnLike"]["AWS:SourceArn"] == "arn:aws:s3:::bucket-d"

    assert aws.disallow_s3("stage-d", "bucket-d") is True
    assert aws.disallow_s3("stage-d", "bucket-d") is False


def test_delete(lab: MotoAws, aws: LambdaClient, role: str) -> None:
    aws.create_function(_spec("stage-e", awslab.push_image(lab, "stage-e", "v1"), role))
    assert aws.delete_function("stage-e") is True
    assert aws.get_function("stage-e") is None
    assert aws.delete_function("stage-e") is False
    assert aws.logs("stage-e") == []  # no log group


# --- bucket triggers ----------------------------------------------------------------------------------------------


def test_our_trigger_keeps_every_other_configuration(lab: MotoAws, s3: S3Store) -> None:
    raw = lab.client("s3")
    raw.create_bucket(Bucket="bucket-f")
    _, queue_arn = awslab.make_queue(lab, "queue-f")
    theirs_arn = f"arn:aws:lambda:{awslab.REGION}:{awslab.ACCOUNT}:function:someone-else"
    ours_arn = f"arn:aws:lambda:{awslab.REGION}:{awslab.ACCOUNT}:function:stage-f"
    queue = {"Id": "their-queue", "QueueArn": queue_arn, "Events": ["s3:ObjectRemoved:*"]}
    theirs = {"Id": "their-lambda", "LambdaFunctionArn": theirs_arn, "Events": ["s3:ObjectCreated:Put"]}
    raw.put_bucket_notification_configuration(
        Bucket="bucket-f",
        NotificationConfiguration={
            "QueueConfigurations": [queue],
            "LambdaFunctionConfigurations": [theirs],
        },
    )

    assert s3.set_lambda_trigger("bucket-f", trigger_id="ours", function_arn=ours_arn, prefix="in/") is True
    config = raw.get_bucket_notification_configuration(Bucket="bucket-f")
    assert config["QueueConfigurations"] == [queue]
    assert [t["Id"] for t in config["LambdaFunctionConfigurations"]] == ["their-lambda", "ours"]
    ours = config["LambdaFunctionConfigurations"][1]
    assert ours["LambdaFunctionArn"] == ours_arn and ours["Events"] == ["s3:ObjectCreated:*"]
    assert ours["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "in/"}]
    assert s3.lambda_triggers("bucket-f") == config["LambdaFunctionConfigurations"]

    with lab.sent() as sent:
        assert s3.set_lambda_trigger("bucket-f", trigger_id="ours", function_arn=ours_arn, prefix="in/") is False
    assert [(item.method, item.query) for item in sent] == [("GET", "notification")]  # read only

    assert s3.set_lambda_trigger("bucket-f", trigger_id="ours", function_arn=ours_arn, prefix="in/", suffix=".csv")
    triggers = s3.lambda_triggers("bucket-f")
    assert [t["Id"] for t in triggers] == ["their-lambda", "ours"]
    assert triggers[1]["Filter"]["Key"]["FilterRules"] == [
        {"Name": "prefix", "Value": "in/"},
        {"Name": "suffix", "Value": ".csv"},
    ]

    assert s3.remove_lambda_trigger("bucket-f", "ours") is True
    config = raw.get_bucket_notification_configuration(Bucket="bucket-f")
    assert config["QueueConfigurations"] == [queue]
    assert config["LambdaFunctionConfigurations"] == [theirs]
    with lab.sent() as sent:
        assert s3.remove_lambda_trigger("bucket-f", "ours") is False
    assert [item.method for item in sent] == ["GET"]

    assert s3.lambda_triggers("no-such-bucket-f") == []
    assert s3.remove_lambda_trigger("no-such-bucket-f", "ours") is False
    with pytest.raises(StorageError, match=r"bucket no-such-bucket-f .*NoSuchBucket"):
        s3.set_lambda_trigger("no-such-bucket-f", trigger_id="ours", function_arn=ours_arn)


def test_an_object_written_invokes_the_function(lab: MotoAws, aws: LambdaClient, s3: S3Store, role: str) -> None:
    """moto invokes a function on an S3 notification through its Docker runner whatever the Lambda backend: a Zip
    function's invocation leaves a line ("error running docker: ...") in its CloudWatch Logs, which
    LambdaClient.logs reads; an Image function's fails inside moto before any line, leaving only its log group."""
    raw = lab.client("s3")
    raw.create_bucket(Bucket="bucket-g")
    queue_url, queue_arn = awslab.make_queue(lab, "queue-g")
    raw.put_bucket_notification_configuration(
        Bucket="bucket-g",
        NotificationConfiguration={
            "QueueConfigurations": [{"Id": "watch", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    zip_arn = awslab.make_zip_function(lab, "stage-g-zip", role)
    aws.create_function(_spec("stage-g", awslab.push_image(lab, "stage-g", "v1"), role))
    image = aws.wait_active("stage-g")

    for name, arn, prefix in (("stage-g-zip", zip_arn, "in/"), ("stage-g", image["FunctionArn"], "img/")):
        aws.allow_s3(name, "bucket-g")
        assert s3.set_lambda_trigger("bucket-g", trigger_id=f"{name}-in", function_arn=arn, prefix=prefix)
    awslab.queue_events(lab, queue_url)  # S3's test event

    start_ms = int(time.time() * 1000)
    raw.put_object(Bucket="bucket-g", Key="other/a.txt", Body=b"not for them")
    assert aws.logs("stage-g-zip") == []
    assert not awslab.log_group_exists(lab, "/aws/lambda/stage-g")

    raw.put_object(Bucket="bucket-g", Key="in/a.txt", Body=b"first")
    lines = aws.logs("stage-g-zip", since_ms=start_ms)
    assert len(lines) == 1 and lines[0].startswith("error running docker")
    assert not awslab.log_group_exists(lab, "/aws/lambda/stage-g")

    time.sleep(0.01)
    second_ms = int(time.time() * 1000)
    raw.put_object(Bucket="bucket-g", Key="in/b.txt", Body=b"second")
    assert len(aws.logs("stage-g-zip")) == 2
    assert len(aws.logs("stage-g-zip", since_ms=second_ms)) == 1
    assert len(aws.logs("stage-g-zip", limit=1)) == 1
    assert aws.logs("stage-g-zip", limit=0) == []

    raw.put_object(Bucket="bucket-g", Key="img/a.txt", Body=b"for the image")
    assert awslab.log_group_exists(lab, "/aws/lambda/stage-g")  # moto's attempt at running it
    assert aws.logs("stage-g") == []

    keys = [unquote_plus(r["s3"]["object"]["key"]) for r in awslab.queue_events(lab, queue_url)]
    assert keys == ["other/a.txt", "in/a.txt", "in/b.txt", "img/a.txt"]  # the other configuration still works


# --- waiting ------------------------------------------------------------------------------------------------------


class _States:
    """GetFunction's answers, one per call, with a fake clock that a sleep moves on."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers
        self.now = 0.0
        self.calls = 0

    def get_function(self, name: str) -> dict[str, Any] | None:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return {"FunctionName": name, **answer}

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _waiter(lab: MotoAws, monkeypatch: pytest.MonkeyPatch, answers: list[dict[str, Any]]) -> tuple[LambdaClient, Any]:
    states = _States(answers)
    client = LambdaClient(lab.access, clock=lambda: states.now, sleep=states.sleep, rand=lambda: 0.0)
    monkeypatch.setattr(client, "get_function", states.get_function)
    return client, states


def test_wait_active_waits_out_pending_and_an_update(lab: MotoAws, monkeypatch: pytest.MonkeyPatch) -> None:
    client, states = _waiter(
        lab,
        monkeypatch,
        [
            {"State": "Pending"},
            {"State": "Active", "LastUpdateStatus": "InProgress"},
            {"State": "Active", "LastUpdateStatus": "Successful"},
        ],
    )
    assert client.wait_active("f", timeout=60)["LastUpdateStatus"] == "Successful"
    assert states.calls == 3


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"State": "Failed", "StateReasonCode": "ImageAccessDenied", "StateReason": "no pull"}, "ImageAccessDenied"),
        (
            {"State": "Active", "LastUpdateStatus": "Failed", "LastUpdateStatusReasonCode": "InvalidImage"},
            "InvalidImage",
        ),
    ],
)
def test_wait_active_raises_a_failed_state(
    lab: MotoAws, monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any], code: str
) -> None:
    client, _ = _waiter(lab, monkeypatch, [{"State": "Pending"}, answer])
    with pytest.raises(AwsError) as caught:
        client.wait_active("f", timeout=60)
    assert caught.value.code == code
    assert f"Lambda function f on {lab.url}" in caught.value.message and code in caught.value.message


def test_wait_active_times_out_naming_the_state(lab: MotoAws, monkeypatch: pytest.MonkeyPatch) -> None:
    client, states = _waiter(lab, monkeypatch, [{"State": "Pending"}])
    with pytest.raises(OperationTimeout) as caught:
        client.wait_active("f", timeout=30)
    assert "Lambda function f" in caught.value.message and "State Pending" in caught.value.message
    assert states.now == pytest.approx(30)


# --- errors -------------------------------------------------------------------------------------------------------


def test_a_missing_function_is_named_with_the_call_and_code(lab: MotoAws, aws: LambdaClient, role: str) -> None:
    image = awslab.push_image(lab, "nope", "v1")
    current = {"ImageUri": image, "Architectures": ["x86_64"], "Role": role, "MemorySize": 128, "Timeout": 300}
    for call, action in (
        ("Lambda AddPermission", lambda: aws.allow_s3("nope", "bucket-x")),
        ("Lambda GetFunction", lambda: aws.wait_active("nope", timeout=5)),
        ("Lambda UpdateFunctionConfiguration", lambda: aws.update_function(_spec("nope", image, role), current)),
        ("Lambda UpdateFunctionCode", lambda: aws.update_function(_spec("nope", image + "2", role), current)),
    ):
        with pytest.raises(AwsError) as caught:
            action()
        assert caught.value.code == "ResourceNotFoundException"
        assert caught.value.message.startswith(f"{call} of function nope on {lab.url}: ResourceNotFoundException")
        assert caught.value.exit_code == EXIT_FAILED


def test_refused_credentials(lab: MotoAws, s3: S3Store) -> None:
    wrong = AwsAccess(
        region=awslab.REGION, access_key="AKIAWRONGWRONGWRONG1", secret_key="wrong-secret-of-ours", endpoint=lab.url
    )
    client = LambdaClient(wrong, timeout=10)
    try:
        with lab.checking_credentials():
            with pytest.raises(AwsAuthRefused) as caught:
                client.get_function("stage-a")
            with pytest.raises(StorageAuthRefused):
                S3Store(S3Access(lab.url, "AKIAWRONGWRONGWRONG1", "wrong-secret-of-ours")).lambda_triggers("b")
    finally:
        client.close()
    error = caught.value
    assert error.exit_code == EXIT_UNREACHABLE and error.hint
    assert error.code == "InvalidClientTokenId"  # moto answers XML to a JSON API: the code is read from it
    assert error.message.startswith(f"Lambda GetFunction of function stage-a on {lab.url}: InvalidClientTokenId (")
    assert "wrong-secret-of-ours" not in error.message and "\n" not in error.message
    assert "wrong-secret-of-ours" not in repr(wrong) and "AKIAWRONG" not in repr(wrong)
    assert mask("key=wrong-secret-of-ours") == "key=***"


def test_an_unreachable_endpoint_is_named(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{awslab.free_port()}"  # nothing listens there
    client = LambdaClient(AwsAccess(access_key="AKIAUNREACHABLE00001", secret_key="unreachable-secret", endpoint=url))
    started = time.monotonic()
    try:
        with pytest.raises(AwsError) as caught:
            client.get_function("stage-a")
    finally:
        client.close()
    assert time.monotonic() - started < 10
    assert not isinstance(caught.value, AwsAuthRefused)
    assert caught.value.message.startswith(f"Lambda GetFunction of function stage-a on {url}: cannot reach it: ")
    assert caught.value.exit_code == EXIT_FAILED


def test_boto3s_own_resolution_of_endpoint_and_keys(lab: MotoAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", lab.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", awslab.KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", awslab.SECRET)
    client = LambdaClient(AwsAccess())
    try:
        assert client.where == lab.url
        assert client.get_function("no-such-function") is None
    finally:
        client.close()

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    client = LambdaClient(AwsAccess())
    try:
        with pytest.raises(AwsAuthRefused, match="no AWS credentials"):
            client.get_function("stage-a")
    finally:
        client.close()


# --- input --------------------------------------------------------------------------------------------------------


def test_half_a_key_pair_is_bad_input() -> None:
    with pytest.raises(InputError):
        LambdaClient(AwsAccess(access_key="AKIAONLYTHEKEY000001"))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "has space"}, "name"),
        ({"image_uri": "grycap/cowsay"}, "image"),
        ({"memory": 64}, "memory"),
        ({"timeout": 901}, "timeout"),
        ({"architectures": ("x86_64", "arm64")}, "architectures"),
    ],
)
def test_a_bad_spec_is_bad_input(changes: dict[str, Any], field: str) -> None:
    good = {
        "name": "stage",
        "image_uri": f"{awslab.ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/stage:v1",
        "role": "arn:aws:iam::123456789012:role/r",
    }
    with pytest.raises(InputError) as caught:
        FunctionSpec(**{**good, **changes})
    assert caught.value.field is not None and caught.value.field.endswith(field)


def test_a_specs_repr_shows_no_environment_value() -> None:
    spec = FunctionSpec(
        "stage", "ghcr.io/grycap/stage:1", "arn:aws:iam::123456789012:role/r", environment={"TOKEN": "s3cr3t-value"}
    )
    assert "TOKEN" in repr(spec) and "s3cr3t-value" not in repr(spec)


@pytest.mark.parametrize(
    ("text", "image", "ecr"),
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/stage:v1", True, True),
        ("123456789012.dkr.ecr.eu-west-3.amazonaws.com/team/stage@sha256:" + "a" * 64, True, True),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/stage", True, True),
        ("ghcr.io/grycap/cowsay:1.0", True, False),
        ("localhost:5000/stage:latest", True, False),
        ("registry:5000/stage", True, False),
        ("grycap/cowsay", False, False),
        ("cowsay:latest", False, False),
        ("ghcr.io/Grycap/cowsay", False, False),
        ("ghcr.io/grycap/cowsay:", False, False),
        ("ghcr.io/grycap/cowsay@sha256:abc", False, False),
        ("https://ghcr.io/grycap/cowsay", False, False),
        ("", False, False),
    ],
)
def test_image_uris(text: str, image: bool, ecr: bool) -> None:
    assert is_image_uri(text) is image
    assert is_ecr_image_uri(text) is ecr
