"""template.yaml checks: sam validate (offline), SAM translator + cfn-lint, sam build + isolated imports.

One ``sam build`` per session (module fixture). Nothing here talks to AWS: sam validate runs in a network
namespace when the machine allows one (``unshare -rn``), and SAM's weekly PyPI version check is disabled
through a fresh SAM config dir. ``sam build`` needs pip to reach its package index for the layer.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

pytestmark = pytest.mark.template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
VENV_BIN = Path(sys.executable).parent
WEBHOOK_ROUTES = {("post", "/alipay/gateway"), ("post", "/alipay/notify")}
INTERNAL_ROUTES = {("post", "/messages"), ("get", "/messages/{ledger_key}"), ("post", "/subscriptions")}


def _sam_template() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text(encoding="utf-8"))


def _functions() -> dict[str, dict[str, Any]]:
    resources = _sam_template()["Resources"]
    return {lid: r for lid, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}


def _handler_location(function_id: str) -> tuple[str, str, str]:
    """(CodeUri, module, attribute) of a function, Globals applied."""
    template = _sam_template()
    props = {**template.get("Globals", {}).get("Function", {}), **template["Resources"][function_id]["Properties"]}
    module, attr = props["Handler"].rsplit(".", 1)
    return props["CodeUri"], module, attr


def _python313() -> str:
    candidates = [sys.executable, shutil.which("python3.13") or ""]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13")))
    for candidate in candidates:
        if not candidate:
            continue
        out = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.stdout.strip() == "True":
            return candidate
    pytest.fail("python3.13 (the Lambda runtime's version) not found: venv, PATH or ~/.pyenv/versions/3.13*")


def _host_architecture() -> tuple[str, str]:
    """(template Architecture, LAYER_ARCH) matching this machine, so the built layer imports here."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return "arm64", "aarch64"
    if machine in ("x86_64", "amd64"):
        return "x86_64", "x86_64"
    pytest.skip(f"no Lambda architecture for host {machine}")


@pytest.fixture(scope="module")
def sam_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    config_dir = tmp_path_factory.mktemp("sam-config")
    # telemetry off, and the weekly PyPI version check already "done": SAM makes no calls of its own.
    (config_dir / "metadata.json").write_text(
        json.dumps({"telemetryEnabled": False, "lastVersionCheck": time.time() + 86400 * 365})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAM_"))}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        __SAM_CLI_APP_DIR=str(config_dir),
        SAM_CLI_TELEMETRY="0",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def _sam() -> str:
    sam = shutil.which("sam", path=str(VENV_BIN)) or shutil.which("sam")
    if sam is None:
        pytest.fail("the sam command (aws-sam-cli, a dev dependency) is not installed")
    return sam


def _offline_prefix() -> list[str]:
    """``unshare -rn`` (a network namespace with loopback only) when this machine allows it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False).returncode == 0:
        return [unshare, "-rn"]
    return []


def _sam_validate(template: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_offline_prefix(), _sam(), "validate", "--template-file", str(template)],
        capture_output=True,
        text=True,
        env=env,
        cwd=template.parent,
        timeout=120,
        check=False,
    )


# --------------------------------------------------------------------------- (a) sam validate


def test_sam_validate_accepts_the_template_offline(sam_env: dict[str, str]) -> None:
    result = _sam_validate(TEMPLATE, sam_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout


def test_sam_validate_rejects_a_broken_template(sam_env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text(encoding="utf-8").replace("Type: HttpApi", "Type: HttpApiz", 1))
    result = _sam_validate(broken, sam_env)
    assert result.returncode != 0
    assert "HttpApiz" in result.stdout + result.stderr


# --------------------------------------------------------------------------- (b) translator + cfn-lint


class _FixedManagedPolicies:
    """Stands in for samtranslator's IAM-backed ManagedPolicyLoader (no AWS call)."""

    def load(self) -> dict[str, str]:
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
            "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
        }


@pytest.fixture(scope="module")
def cloudformation() -> dict[str, Any]:
    sam = _sam_template()
    # The translator wants S3 locations where sam package would put them.
    for resource in sam["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://artifacts/function.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = "s3://artifacts/layer.zip"
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        return transform(sam, {}, _FixedManagedPolicies())  # type: ignore[arg-type]
    finally:
        mp.undo()


def test_cfn_lint_finds_nothing_in_the_translated_template(cloudformation: dict[str, Any]) -> None:
    matches = lint(json.dumps(cloudformation), config=ManualArgs(regions=["us-east-1", "cn-north-1"]))
    problems = [f"{m.rule.id} {m.message} ({m.path})" for m in matches if not m.rule.id.startswith("I")]
    assert problems == []


def test_contract_logical_ids_exist(cloudformation: dict[str, Any]) -> None:
    types = {lid: r["Type"] for lid, r in cloudformation["Resources"].items()}
    assert types["HttpApi"] == "AWS::ApiGatewayV2::Api"
    assert types["WebhookFunction"] == "AWS::Lambda::Function"
    assert types["StateTable"] == types["IdempotencyTable"] == "AWS::DynamoDB::Table"
    assert types["EventsQueue"] == types["EventsDLQ"] == "AWS::SQS::Queue"
    assert types["EventsDLQDepthAlarm"] == "AWS::CloudWatch::Alarm"
    assert any(t == "AWS::Lambda::LayerVersion" and lid.startswith("SharedLayer") for lid, t in types.items())
    assert types["OutboundQueue"] == types["OutboundDLQ"] == "AWS::SQS::Queue"
    assert types["OutboundDLQDepthAlarm"] == "AWS::CloudWatch::Alarm"
    for function_id in ("MessageGatewayFunction", "InternalApiFunction", "MetricsFunction"):
        assert types[function_id] == "AWS::Lambda::Function"
    assert types["AttributionSecret"] == "AWS::SecretsManager::Secret"
    outputs = cloudformation["Outputs"]
    assert outputs["OutboundQueueUrl"]["Value"] == {"Ref": "OutboundQueue"}
    assert outputs["OutboundDLQUrl"]["Value"] == {"Ref": "OutboundDLQ"}


def test_only_the_webhook_routes_are_public(cloudformation: dict[str, Any]) -> None:
    body = cloudformation["Resources"]["HttpApi"]["Properties"]["Body"]
    assert "AWS_IAM" in body["components"]["securitySchemes"]
    routes = {(method, path): op for path, ops in body["paths"].items() for method, op in ops.items()}
    assert set(routes) >= WEBHOOK_ROUTES
    for route, operation in routes.items():
        expected = [{"NONE": []}] if route in WEBHOOK_ROUTES else [{"AWS_IAM": []}]
        assert operation["security"] == expected, route
    # Routes added later inherit IAM: the API's default authorizer is AWS_IAM.
    auth = _sam_template()["Resources"]["HttpApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "AWS_IAM"


def test_internal_api_routes_go_to_the_internal_function_with_iam(cloudformation: dict[str, Any]) -> None:
    paths = cloudformation["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
    for method, path in INTERNAL_ROUTES:
        operation = paths[path][method]
        assert operation["security"] == [{"AWS_IAM": []}], (method, path)
        assert "${InternalApiFunction.Arn}" in json.dumps(operation["x-amazon-apigateway-integration"]["uri"])
        assert operation["x-amazon-apigateway-integration"]["payloadFormatVersion"] == "2.0"


def test_function_roles_grant_nothing_on_every_resource(cloudformation: dict[str, Any]) -> None:
    roles = {lid: r for lid, r in cloudformation["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert "WebhookFunctionRole" in roles
    for lid, role in roles.items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                assert "*" not in resources, (lid, statement)


def test_webhook_reads_only_secrets_under_the_app_prefix(cloudformation: dict[str, Any]) -> None:
    role = cloudformation["Resources"]["WebhookFunctionRole"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    secret_statements = [s for s in statements if "secretsmanager" in json.dumps(s["Action"])]
    assert [s["Action"] for s in secret_statements] == ["secretsmanager:GetSecretValue"]
    resource = json.dumps(secret_statements[0]["Resource"])
    assert ":secret:${AppSecretPrefix}*" in resource


def _consumer_timeouts(resources: dict[str, Any], queue_id: str) -> list[int]:
    """Timeouts of the functions an SQS event source mapping feeds from ``queue_id``."""
    timeouts = []
    for r in resources.values():
        if r["Type"] == "AWS::Lambda::EventSourceMapping" and r["Properties"]["EventSourceArn"] == {
            "Fn::GetAtt": [queue_id, "Arn"]
        }:
            function_id = r["Properties"]["FunctionName"]["Ref"]
            timeouts.append(int(resources[function_id]["Properties"]["Timeout"]))
    return timeouts


@pytest.mark.parametrize(
    ("queue_id", "dlq_id", "alarm_id"),
    [("EventsQueue", "EventsDLQ", "EventsDLQDepthAlarm"), ("OutboundQueue", "OutboundDLQ", "OutboundDLQDepthAlarm")],
)
def test_queue_redrive_visibility_and_dlq_alarm(
    cloudformation: dict[str, Any], queue_id: str, dlq_id: str, alarm_id: str
) -> None:
    resources = cloudformation["Resources"]
    queue = resources[queue_id]["Properties"]
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]}, "maxReceiveCount": 5}
    consumers = _consumer_timeouts(resources, queue_id)
    assert consumers, f"nothing consumes {queue_id}"
    # Lambda's rule: visibility >= 6x the consumer's timeout.
    assert queue["VisibilityTimeout"] >= 6 * max(consumers)
    assert queue["SqsManagedSseEnabled"] is True
    dlq = resources[dlq_id]["Properties"]
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dlq["SqsManagedSseEnabled"] is True
    alarm = resources[alarm_id]["Properties"]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


@pytest.mark.parametrize(
    ("function_id", "queue_id", "batching"),
    [
        ("MessageGatewayFunction", "OutboundQueue", (10, 1)),  # ten sends at once, promptly
        ("MetricsFunction", "EventsQueue", (200, 2)),  # big batches are what make pre-aggregation pay
    ],
)
def test_queue_consumers_batch_with_partial_failures(
    cloudformation: dict[str, Any], function_id: str, queue_id: str, batching: tuple[int, int]
) -> None:
    mappings = [
        r["Properties"]
        for r in cloudformation["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping" and r["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    assert len(mappings) == 1
    (mapping,) = mappings
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == batching
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_tables_are_on_demand_with_the_contract_keys(cloudformation: dict[str, Any]) -> None:
    resources = cloudformation["Resources"]
    state, idem = resources["StateTable"]["Properties"], resources["IdempotencyTable"]["Properties"]
    assert state["BillingMode"] == idem["BillingMode"] == "PAY_PER_REQUEST"
    assert state["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert idem["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert idem["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert state["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_webhook_environment_names(cloudformation: dict[str, Any]) -> None:
    variables = cloudformation["Resources"]["WebhookFunction"]["Properties"]["Environment"]["Variables"]
    assert {
        "STATE_TABLE",
        "IDEMPOTENCY_TABLE",
        "EVENTS_QUEUE_URL",
        "APP_SECRET_PREFIX",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_LOG_LEVEL",
    } <= set(variables)
    assert "AWS_ENDPOINT_URL" not in variables


def _statements(cloudformation: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    role = cloudformation["Resources"][f"{function_id}Role"]["Properties"]
    return [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def _granted(cloudformation: dict[str, Any], function_id: str, action: str) -> list[str]:
    """The resources (as JSON text) on which ``function_id``'s inline policies allow ``action``."""
    found = []
    for statement in _statements(cloudformation, function_id):
        if any(a == action or (a.endswith("*") and action.startswith(a[:-1])) for a in _actions(statement)):
            found.append(json.dumps(statement["Resource"]))
    return found


def test_message_gateway_permissions(cloudformation: dict[str, Any]) -> None:
    granted = lambda action: _granted(cloudformation, "MessageGatewayFunction", action)  # noqa: E731
    assert all("StateTable" in r for r in granted("dynamodb:UpdateItem")) and granted("dynamodb:UpdateItem")
    sends = granted("sqs:SendMessage")
    assert len(sends) == 2
    assert [r for r in sends if "EventsQueue" in r] and [r for r in sends if "OutboundQueue" in r]
    assert granted("sqs:ChangeMessageVisibility") == [json.dumps({"Fn::GetAtt": ["OutboundQueue", "Arn"]})]
    secrets = granted("secretsmanager:GetSecretValue")
    assert sorted(secrets) == sorted(
        [
            json.dumps({"Ref": "AttributionSecret"}),
            json.dumps(
                {
                    "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}"
                    ":secret:${AppSecretPrefix}*"
                }
            ),
        ]
    )
    assert not granted("secretsmanager:PutSecretValue")


def test_internal_api_permissions_are_narrow(cloudformation: dict[str, Any]) -> None:
    granted = lambda action: _granted(cloudformation, "InternalApiFunction", action)  # noqa: E731
    table_and_index = [{"Fn::GetAtt": ["StateTable", "Arn"]}, {"Fn::Sub": "${StateTable.Arn}/index/followers"}]
    for action in ("dynamodb:UpdateItem", "dynamodb:PutItem"):  # writes: the state table only
        assert granted(action) == [json.dumps(table_and_index)], action
    metrics_tables = [{"Fn::GetAtt": ["ProfilesTable", "Arn"]}, {"Fn::GetAtt": ["MetricsTable", "Arn"]}]
    for action in ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"):  # reads: the metrics too
        assert sorted(granted(action)) == sorted([json.dumps(table_and_index), json.dumps(metrics_tables)]), action
    for action in ("dynamodb:DeleteItem", "dynamodb:Scan", "dynamodb:DeleteTable", "secretsmanager:GetSecretValue"):
        assert not granted(action), action
    sends = granted("sqs:SendMessage")
    assert len(sends) == 2 and any("OutboundQueue" in s for s in sends) and any("EventsQueue" in s for s in sends)


def test_metrics_permissions(cloudformation: dict[str, Any]) -> None:
    granted = lambda action: _granted(cloudformation, "MetricsFunction", action)  # noqa: E731
    sends = granted("sqs:SendMessage")
    assert len(sends) == 1 and "OutboundQueue" in sends[0]
    # the attribution key (to verify tracked links), the apps' keys (confirm_follow's follow query), nothing else
    secrets = granted("secretsmanager:GetSecretValue")
    assert json.dumps({"Ref": "AttributionSecret"}) in secrets and len(secrets) == 2
    assert any("${AppSecretPrefix}*" in r for r in secrets)
    updates = granted("dynamodb:UpdateItem")  # its own tables: state (facts), profiles, metrics
    assert updates and all(any(t in r for t in ("StateTable", "ProfilesTable", "MetricsTable")) for r in updates)
    assert not any("IdempotencyTable" in r for r in updates)


def test_attribution_secret_is_generated_under_the_parameter_name(cloudformation: dict[str, Any]) -> None:
    parameters = _sam_template()["Parameters"]
    assert parameters["AttributionSecretName"]["Default"] == "lifelink/attribution-key"
    assert parameters["AlipayGatewayUrl"]["Default"] == "https://openapi.alipay.com/gateway.do"
    secret = cloudformation["Resources"]["AttributionSecret"]["Properties"]
    assert secret["Name"] == {"Ref": "AttributionSecretName"}
    assert secret["GenerateSecretString"] == {"PasswordLength": 48, "ExcludePunctuation": True}
    assert "SecretString" not in secret


@pytest.mark.parametrize(
    ("function_id", "expected"),
    [
        (
            "MessageGatewayFunction",
            {
                "STATE_TABLE": {"Ref": "StateTable"},
                "EVENTS_QUEUE_URL": {"Ref": "EventsQueue"},
                "OUTBOUND_QUEUE_URL": {"Ref": "OutboundQueue"},
                "ALIPAY_GATEWAY_URL": {"Ref": "AlipayGatewayUrl"},
                "ATTRIBUTION_SECRET_NAME": {"Ref": "AttributionSecretName"},
                "SEND_CONCURRENCY": "10",
            },
        ),
        ("InternalApiFunction", {"STATE_TABLE": {"Ref": "StateTable"}, "OUTBOUND_QUEUE_URL": {"Ref": "OutboundQueue"}}),
        (
            "MetricsFunction",
            {
                "STATE_TABLE": {"Ref": "StateTable"},
                "EVENTS_QUEUE_URL": {"Ref": "EventsQueue"},
                "OUTBOUND_QUEUE_URL": {"Ref": "OutboundQueue"},
            },
        ),
    ],
)
def test_new_function_environments(cloudformation: dict[str, Any], function_id: str, expected: dict[str, Any]) -> None:
    variables = cloudformation["Resources"][function_id]["Properties"]["Environment"]["Variables"]
    assert {k: variables[k] for k in expected if k in variables} == expected
    assert variables["APP_SECRET_PREFIX"] == {"Ref": "AppSecretPrefix"}
    assert "AWS_ENDPOINT_URL" not in variables


def test_message_gateway_timeout_fits_the_outbound_visibility(cloudformation: dict[str, Any]) -> None:
    resources = cloudformation["Resources"]
    timeout = resources["MessageGatewayFunction"]["Properties"]["Timeout"]
    assert 30 <= timeout <= 120
    assert resources["OutboundQueue"]["Properties"]["VisibilityTimeout"] >= 6 * timeout


# --------------------------------------------------------------------------- (c) sam build + imports


def test_every_handler_file_exists() -> None:
    missing = []
    for function_id in _functions():
        code_uri, module, _ = _handler_location(function_id)
        path = REPO / code_uri / (module.replace(".", "/") + ".py")
        if not path.is_file():
            missing.append(f"{function_id}: {path.relative_to(REPO)}")
    assert not missing, f"handler files named by template.yaml are missing: {missing}"


def test_layer_makefile_defaults_to_arm64() -> None:
    env = {k: v for k, v in os.environ.items() if k != "LAYER_ARCH"}
    dry = subprocess.run(
        ["make", "-n", "-C", str(REPO / "shared"), "build-SharedLayer", "ARTIFACTS_DIR=/nonexistent"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr
    assert "--platform manylinux2014_aarch64" in dry.stdout
    assert "--python-version 3.13" in dry.stdout


@pytest.fixture(scope="module")
def built(sam_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    for function_id in _functions():
        code_uri, module, _ = _handler_location(function_id)
        if not (REPO / code_uri / (module.replace(".", "/") + ".py")).is_file():
            pytest.fail(f"{function_id}: handler file {code_uri}{module}.py is missing; cannot sam build")
    architecture, layer_arch = _host_architecture()
    build_dir = tmp_path_factory.mktemp("sam") / "build"
    env = {**sam_env, "LAYER_ARCH": layer_arch}
    result = subprocess.run(
        [
            _sam(),
            "build",
            "--template-file",
            str(TEMPLATE),
            "--build-dir",
            str(build_dir),
            "--parameter-overrides",
            f"Architecture={architecture}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"sam build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return build_dir


def _layer_python(built: Path) -> Path:
    return built / "SharedLayer" / "python"


@pytest.mark.parametrize("function_id", sorted(_functions()))
def test_built_handler_imports_with_only_its_code_and_the_layer(built: Path, function_id: str) -> None:
    _, module, attr = _handler_location(function_id)
    function_dir, layer_dir = built / function_id, _layer_python(built)
    probe = (
        "import importlib, json, sys\n"
        f"sys.path[:0] = [{str(function_dir)!r}, {str(layer_dir)!r}]\n"
        f"mod = importlib.import_module({module!r})\n"
        f"handler = getattr(mod, {attr!r}, None)\n"
        "lifelink = sys.modules.get('lifelink')\n"
        "print(json.dumps({'callable': callable(handler), 'file': mod.__file__, 'path': sys.path,\n"
        "  'lifelink': getattr(lifelink, '__file__', None), 'site': 'site' in sys.modules}))\n"
    )
    # Lambda-like environment; AWS_ENDPOINT_URL points at a closed loopback port so a stray call at import
    # time fails here instead of reaching AWS.
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_LAMBDA_FUNCTION_NAME": function_id,
        "STATE_TABLE": "StateTable",
        "IDEMPOTENCY_TABLE": "IdempotencyTable",
        "EVENTS_QUEUE_URL": "http://127.0.0.1:9/123456789012/EventsQueue",
        "APP_SECRET_PREFIX": "lifelink/apps/",
        "POWERTOOLS_SERVICE_NAME": "lifelink",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    result = subprocess.run(
        [_python313(), "-I", "-S", "-c", probe], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["callable"], f"{function_id}: {module}.{attr} is not callable"
    assert Path(report["file"]).is_relative_to(function_dir)
    assert not report["site"]
    assert not [p for p in report["path"] if "site-packages" in p]
    if report["lifelink"]:
        assert Path(report["lifelink"]).is_relative_to(layer_dir)


def test_layer_ships_unchecked_hash_pyc_for_every_module(built: Path) -> None:
    layer = _layer_python(built)
    sources = [p for p in layer.rglob("*.py") if "__pycache__" not in p.parts]
    assert any(p.parts[-2:] == ("lifelink", "__init__.py") for p in sources)
    assert not [p for p in (layer / "lifelink").rglob("*") if p.name in ("tests", "conftest.py")]
    magic = importlib.util.MAGIC_NUMBER if sys.version_info[:2] == (3, 13) else None
    missing, wrong = [], []
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        if not pyc.is_file():
            missing.append(str(source.relative_to(layer)))
            continue
        data = pyc.read_bytes()
        flags = int.from_bytes(data[4:8], "little")
        # bit 0: hash-based; bit 1: check_source. Unchecked hash = 0b01.
        if flags != 0b01 or (magic and data[:4] != magic):
            wrong.append(f"{source.relative_to(layer)} flags={flags:#04b}")
        elif magic and source.parts[-2:] == ("lifelink", "__init__.py"):
            assert data[8:16] == importlib.util.source_hash(source.read_bytes())
    assert not missing, f"{len(missing)} modules without .pyc, e.g. {missing[:5]}"
    assert not wrong, f"{len(wrong)} .pyc not unchecked-hash, e.g. {wrong[:5]}"


def test_samconfig_overrides_name_template_parameters_with_allowed_values() -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text(encoding="utf-8"))
    overrides = dict(re.findall(r'(\w+)="([^"]*)"', config["default"]["deploy"]["parameters"]["parameter_overrides"]))
    parameters = _sam_template()["Parameters"]
    assert set(overrides) == set(parameters)
    for name, value in overrides.items():
        spec = parameters[name]
        assert value == spec["Default"], name
        if "AllowedValues" in spec:
            assert value in spec["AllowedValues"], name
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), name
