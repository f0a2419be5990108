"""Local resources from template.yaml itself: one source of truth for tables, queues, routes and env.

``provision()`` reads the SAM template (cfn-lint's YAML decoder understands ``!Ref``/``!GetAtt``/``!Sub``)
and creates, through boto3 clients that honour ``AWS_ENDPOINT_URL`` (moto's server locally), every
``AWS::DynamoDB::Table`` and ``AWS::SQS::Queue`` it declares, named ``f"{prefix}-{LogicalId}"``, and every
``AWS::SecretsManager::Secret`` under its template ``Name`` (or ``f"{prefix}-{LogicalId}"`` without one),
with its ``SecretString`` or a random string made as its ``GenerateSecretString`` describes.
Existing resources are reused (queue attributes are brought back in line with the template; an existing
secret keeps its value), so provisioning twice is harmless.

The returned :class:`Provisioned` resolves each function's environment (Globals + function) to the
real local names and URLs, and lists the template's HTTP API routes and SQS event sources so the local
HTTP front and pollers wire the same handlers the cloud would.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError
from cfnlint.decode import cfn_yaml

DEFAULT_TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
DEFAULT_PREFIX = "lifelink-local"
LOCAL_ACCOUNT_ID = "123456789012"  # moto's default account

TABLE = "AWS::DynamoDB::Table"
QUEUE = "AWS::SQS::Queue"
SECRET = "AWS::SecretsManager::Secret"
FUNCTION = "AWS::Serverless::Function"
HTTP_API = "AWS::Serverless::HttpApi"
ROLE = "AWS::IAM::Role"

# Template queue properties -> SQS attribute names (same names, except those mapped here).
_QUEUE_ATTRIBUTES = (
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "ContentBasedDeduplication",
    "FifoQueue",
)
_SQS_DEFAULT_VISIBILITY_TIMEOUT = 30
_SQS_DEFAULT_BATCH_SIZE = 10


class TemplateError(ValueError):
    """The template holds something this local provisioner cannot resolve."""


# --------------------------------------------------------------------------- the template


@dataclass(frozen=True)
class HttpRoute:
    """One HTTP API route of a function (``auth``: "NONE" or the authorizer name, e.g. "AWS_IAM")."""

    method: str
    path: str
    function_id: str
    handler_file: Path
    handler_name: str
    auth: str
    api_id: str | None
    payload_format_version: str


@dataclass(frozen=True)
class EventSourceMapping:
    """One SQS event source of a function, as Lambda's event source mapping would poll it."""

    function_id: str
    handler_file: Path
    handler_name: str
    queue_id: str
    batch_size: int
    maximum_batching_window_s: int
    function_response_types: tuple[str, ...]
    enabled: bool

    @property
    def report_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types


@dataclass(frozen=True)
class ScheduleEvent:
    """One ``ScheduleV2`` event of a function: EventBridge Scheduler invokes it on ``expression`` with ``input``."""

    function_id: str
    event_id: str
    handler_file: Path
    handler_name: str
    expression: str
    timezone: str
    input: str | None
    enabled: bool


def _plain(node: Any) -> Any:
    """cfn-lint's node types (str/dict subclasses with line marks) to plain Python values."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def _single_id(value: Any) -> str | None:
    """The logical id in ``{"Ref": X}``, ``{"Fn::GetAtt": [X, attr]}`` or ``"X.attr"`` forms."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and isinstance(arg, str):
            return arg
        if key == "Fn::GetAtt":
            if isinstance(arg, list) and arg:
                return str(arg[0])
            if isinstance(arg, str):
                return arg.split(".", 1)[0]
    return None


class SamTemplate:
    """A parsed SAM template (no AWS calls)."""

    def __init__(self, data: Mapping[str, Any], base_dir: Path) -> None:
        self.data: dict[str, Any] = _plain(dict(data))
        self.base_dir = base_dir
        self.resources: dict[str, dict[str, Any]] = self.data.get("Resources", {})
        self.parameters: dict[str, dict[str, Any]] = self.data.get("Parameters", {})
        self.function_globals: dict[str, Any] = self.data.get("Globals", {}).get("Function", {})
        self.http_api_globals: dict[str, Any] = self.data.get("Globals", {}).get("HttpApi", {})

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] = DEFAULT_TEMPLATE) -> SamTemplate:
        path = Path(path).resolve()
        return cls.from_string(path.read_text(encoding="utf-8"), path.parent)

    @classmethod
    def from_string(cls, text: str, base_dir: str | os.PathLike[str] = ".") -> SamTemplate:
        data = cfn_yaml.loads(text)
        if not isinstance(data, dict):
            raise TemplateError("the template is not a mapping")
        return cls(data, Path(base_dir).resolve())

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r.get("Type") == resource_type}

    def properties(self, logical_id: str) -> dict[str, Any]:
        try:
            return self.resources[logical_id].get("Properties", {}) or {}
        except KeyError:
            raise TemplateError(f"no resource {logical_id!r} in the template") from None

    def function_property(self, function_id: str, name: str, default: Any = None) -> Any:
        props = self.properties(function_id)
        if name in props:
            return props[name]
        return self.function_globals.get(name, default)

    def handler_location(self, function_id: str) -> tuple[Path, str]:
        """(handler file, handler attribute) from CodeUri + Handler, e.g. (functions/webhook/app.py, handler)."""
        code_uri = self.function_property(function_id, "CodeUri")
        handler = self.function_property(function_id, "Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
            raise TemplateError(f"{function_id}: needs a local CodeUri and a module.attr Handler")
        module, attr = handler.rsplit(".", 1)
        return self.base_dir / code_uri / (module.replace(".", "/") + ".py"), attr

    def function_timeout(self, function_id: str) -> int:
        return int(self.function_property(function_id, "Timeout", 3))

    def environment_template(self, function_id: str) -> dict[str, Any]:
        """Globals' then the function's Environment Variables (unresolved)."""
        merged: dict[str, Any] = {}
        for source in (self.function_globals, self.properties(function_id)):
            merged.update((source.get("Environment") or {}).get("Variables") or {})
        return merged

    def _events(self, event_type: str) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for function_id in self.of_type(FUNCTION):
            for event in (self.properties(function_id).get("Events") or {}).values():
                if event.get("Type") == event_type:
                    found.append((function_id, event.get("Properties") or {}))
        return found

    def _default_authorizer(self, api_id: str | None) -> str:
        auth: dict[str, Any] = dict(self.http_api_globals.get("Auth") or {})
        if api_id is not None:
            auth.update(self.properties(api_id).get("Auth") or {})
        return str(auth.get("DefaultAuthorizer") or "NONE")

    def http_routes(self) -> list[HttpRoute]:
        routes = []
        for function_id, props in self._events("HttpApi"):
            api_id = _single_id(props.get("ApiId"))
            auth = (props.get("Auth") or {}).get("Authorizer") or self._default_authorizer(api_id)
            method = str(props.get("Method", "ANY")).upper()
            handler_file, handler_name = self.handler_location(function_id)
            routes.append(
                HttpRoute(
                    method="ANY" if method == "X-AMAZON-APIGATEWAY-ANY-METHOD" else method,
                    path=str(props.get("Path", "$default")),
                    function_id=function_id,
                    handler_file=handler_file,
                    handler_name=handler_name,
                    auth=str(auth),
                    api_id=api_id,
                    payload_format_version=str(props.get("PayloadFormatVersion", "2.0")),
                )
            )
        return routes

    def event_source_mappings(self) -> list[EventSourceMapping]:
        mappings = []
        for function_id, props in self._events("SQS"):
            queue_id = _single_id(props.get("Queue"))
            if queue_id is None or self.resources.get(queue_id, {}).get("Type") != QUEUE:
                raise TemplateError(f"{function_id}: SQS event Queue must be !GetAtt <queue in template>.Arn")
            handler_file, handler_name = self.handler_location(function_id)
            mappings.append(
                EventSourceMapping(
                    function_id=function_id,
                    handler_file=handler_file,
                    handler_name=handler_name,
                    queue_id=queue_id,
                    batch_size=int(props.get("BatchSize", _SQS_DEFAULT_BATCH_SIZE)),
                    maximum_batching_window_s=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                    function_response_types=tuple(props.get("FunctionResponseTypes") or ()),
                    enabled=bool(props.get("Enabled", True)),
                )
            )
        return mappings

    def schedule_events(self) -> list[ScheduleEvent]:
        """Every ``ScheduleV2`` event (the local ticker fires them; moto holds no schedule the template makes)."""
        found = []
        for function_id in self.of_type(FUNCTION):
            for event_id, event in (self.properties(function_id).get("Events") or {}).items():
                if event.get("Type") != "ScheduleV2":
                    continue
                props = event.get("Properties") or {}
                handler_file, handler_name = self.handler_location(function_id)
                found.append(
                    ScheduleEvent(
                        function_id=function_id,
                        event_id=str(event_id),
                        handler_file=handler_file,
                        handler_name=handler_name,
                        expression=str(props.get("ScheduleExpression", "")),
                        timezone=str(props.get("ScheduleExpressionTimezone") or "UTC"),
                        input=str(props["Input"]) if isinstance(props.get("Input"), str) else None,
                        enabled=str(props.get("State", "ENABLED")).upper() != "DISABLED",
                    )
                )
        return found

    def queues_in_creation_order(self) -> list[str]:
        """Queue logical ids, every dead-letter queue before the queues that redrive to it."""
        queues = self.of_type(QUEUE)
        ordered: list[str] = []

        def visit(queue_id: str, seen: tuple[str, ...]) -> None:
            if queue_id in ordered:
                return
            if queue_id in seen:
                raise TemplateError(f"redrive cycle through {queue_id}")
            dlq = _single_id((self.properties(queue_id).get("RedrivePolicy") or {}).get("deadLetterTargetArn"))
            if dlq is not None:
                if dlq not in queues:
                    raise TemplateError(f"{queue_id}: dead-letter queue {dlq!r} is not a queue in the template")
                visit(dlq, (*seen, queue_id))
            ordered.append(queue_id)

        for queue_id in queues:
            visit(queue_id, ())
        return ordered


# --------------------------------------------------------------------------- provisioned resources


@dataclass(frozen=True)
class QueueSettings:
    logical_id: str
    name: str
    url: str
    arn: str
    visibility_timeout_s: int
    dead_letter_queue_id: str | None
    max_receive_count: int | None
    fifo: bool


@dataclass
class Provisioned:
    """What ``provision()`` created, and the template's view of it."""

    template: SamTemplate
    prefix: str
    region: str
    tables: dict[str, str] = field(default_factory=dict)  # logical id -> table name
    table_arns: dict[str, str] = field(default_factory=dict)
    queues: dict[str, str] = field(default_factory=dict)  # logical id -> queue URL
    queue_arns: dict[str, str] = field(default_factory=dict)
    queue_names: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)  # parameter values (defaults + overrides)
    secrets: dict[str, str] = field(default_factory=dict)  # logical id -> secret name
    secret_arns: dict[str, str] = field(default_factory=dict)  # logical id -> ARN (what !Ref gives)

    def function_environment(self, function_id: str) -> dict[str, str]:
        """The function's Environment Variables (Globals + function), resolved to local names and URLs."""
        if self.template.resources.get(function_id, {}).get("Type") != FUNCTION:
            raise TemplateError(f"{function_id!r} is not a function in the template")
        return {
            name: self.resolve(value, f"{function_id}.Environment.{name}")
            for name, value in self.template.environment_template(function_id).items()
        }

    def queue_settings(self, queue_id: str) -> QueueSettings:
        if queue_id not in self.queues:
            raise TemplateError(f"{queue_id!r} is not a provisioned queue")
        props = self.template.properties(queue_id)
        redrive = props.get("RedrivePolicy") or {}
        return QueueSettings(
            logical_id=queue_id,
            name=self.queue_names[queue_id],
            url=self.queues[queue_id],
            arn=self.queue_arns[queue_id],
            visibility_timeout_s=int(props.get("VisibilityTimeout", _SQS_DEFAULT_VISIBILITY_TIMEOUT)),
            dead_letter_queue_id=_single_id(redrive.get("deadLetterTargetArn")),
            max_receive_count=int(redrive["maxReceiveCount"]) if "maxReceiveCount" in redrive else None,
            fifo=_truthy(props.get("FifoQueue", False)),
        )

    def event_source_mappings(self) -> list[EventSourceMapping]:
        return self.template.event_source_mappings()

    def http_routes(self) -> list[HttpRoute]:
        return self.template.http_routes()

    def schedule_events(self) -> list[ScheduleEvent]:
        return self.template.schedule_events()

    def function_name(self, function_id: str) -> str:
        """The function's ``FunctionName`` when the template sets one, else ``f"{prefix}-{LogicalId}"``."""
        if self.template.resources.get(function_id, {}).get("Type") != FUNCTION:
            raise TemplateError(f"{function_id!r} is not a function in the template")
        name = self.template.properties(function_id).get("FunctionName")
        return self.resolve(name, f"{function_id}.FunctionName") if name is not None else f"{self.prefix}-{function_id}"

    def function_arn(self, function_id: str) -> str:
        """A placeholder ARN for the function (nothing is deployed locally; the ticker maps it to the handler)."""
        return f"arn:aws:lambda:{self.region}:{LOCAL_ACCOUNT_ID}:function:{self.function_name(function_id)}"

    def role_arn(self, role_id: str) -> str:
        """A placeholder ARN for an IAM role of the template (IAM is not enforced locally)."""
        if self.template.resources.get(role_id, {}).get("Type") != ROLE:
            raise TemplateError(f"{role_id!r} is not an IAM role in the template")
        return f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/{self.prefix}-{role_id}"

    # ---- intrinsic functions, as far as the local stack needs them

    def resolve(self, value: Any, where: str = "value") -> str:
        """Resolve a template value (plain or Ref/GetAtt/Sub/Join) to a string."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(str(arg), where)
            if key == "Fn::GetAtt":
                target, _, attr = (arg if isinstance(arg, str) else ".".join(map(str, arg))).partition(".")
                return self._get_att(target, attr, where)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return self._sub(str(text), {k: self.resolve(v, where) for k, v in variables.items()}, where)
            if key == "Fn::Join":
                delimiter, items = arg
                return str(delimiter).join(self.resolve(item, where) for item in items)
        raise TemplateError(f"{where}: cannot resolve {value!r} locally")

    def _pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.prefix,
        }.get(name)

    def _ref(self, name: str, where: str) -> str:
        pseudo = self._pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self.parameters:
            return self.parameters[name]
        if name in self.tables:
            return self.tables[name]
        if name in self.queues:
            return self.queues[name]
        if name in self.secret_arns:
            return self.secret_arns[name]
        raise TemplateError(f"{where}: !Ref {name} has no local value (not a parameter, table, queue or secret)")

    def _get_att(self, target: str, attr: str, where: str) -> str:
        kind = self.template.resources.get(target, {}).get("Type")
        if attr == "Arn" and kind == FUNCTION:
            return self.function_arn(target)
        if attr == "Arn" and kind == ROLE:
            return self.role_arn(target)
        table = {"Arn": self.table_arns} if target in self.tables else {}
        queue = (
            {"Arn": self.queue_arns, "QueueName": self.queue_names, "QueueUrl": self.queues}
            if target in self.queues
            else {}
        )
        values = table.get(attr) or queue.get(attr)
        if values is None:
            raise TemplateError(f"{where}: !GetAtt {target}.{attr} has no local value")
        return values[target]

    def _sub(self, text: str, variables: Mapping[str, str], where: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return variables[name]
            if "." in name and not name.startswith("AWS::"):
                target, attr = name.split(".", 1)
                return self._get_att(target, attr, where)
            return self._ref(name, where)

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


# --------------------------------------------------------------------------- creating resources


def _create_table(client: Any, name: str, props: Mapping[str, Any]) -> str:
    try:
        return str(client.describe_table(TableName=name)["Table"]["TableArn"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    billing = str(props.get("BillingMode", "PROVISIONED"))
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = props.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        )
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            request[key] = [
                {k: v for k, v in index.items() if billing == "PROVISIONED" or k != "ProvisionedThroughput"}
                for index in props[key]
            ]
    stream = props.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    try:
        arn = str(client.create_table(**request)["TableDescription"]["TableArn"])
    except ClientError as exc:  # created concurrently by someone else: reuse it
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
        arn = str(client.describe_table(TableName=name)["Table"]["TableArn"])
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    ttl = props.get("TimeToLiveSpecification") or {}
    if _truthy(ttl.get("Enabled")) and ttl.get("AttributeName"):
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )
    return arn


def _queue_attributes(props: Mapping[str, Any], dlq_arn: str | None) -> dict[str, str]:
    attributes = {
        key: ("true" if value is True else "false" if value is False else str(value))
        for key in _QUEUE_ATTRIBUTES
        if (value := props.get(key)) is not None
    }
    redrive = props.get("RedrivePolicy")
    if redrive:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": int(redrive["maxReceiveCount"])}
        )
    return attributes


def _create_queue(client: Any, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    try:
        url = str(client.get_queue_url(QueueName=name)["QueueUrl"])
        mutable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
        if mutable:  # reuse, but bring the settings back in line with the template
            client.set_queue_attributes(QueueUrl=url, Attributes=mutable)
    except ClientError as exc:
        if "NonExistentQueue" not in exc.response["Error"]["Code"]:
            raise
        url = str(client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, str(arn)


def generate_secret_string(spec: Mapping[str, Any]) -> str:
    """A random string as CloudFormation's ``GenerateSecretString`` describes (length 32 by default).

    With ``SecretStringTemplate`` and ``GenerateStringKey`` the result is that JSON object with the random
    string added under the key, as Secrets Manager does.
    """
    alphabet = ""
    if not _truthy(spec.get("ExcludeLowercase", False)):
        alphabet += string.ascii_lowercase
    if not _truthy(spec.get("ExcludeUppercase", False)):
        alphabet += string.ascii_uppercase
    if not _truthy(spec.get("ExcludeNumbers", False)):
        alphabet += string.digits
    if not _truthy(spec.get("ExcludePunctuation", False)):
        alphabet += string.punctuation  # Secrets Manager's set for GetRandomPassword
    if _truthy(spec.get("IncludeSpace", False)):
        alphabet += " "
    excluded = set(str(spec.get("ExcludeCharacters", "")))
    alphabet = "".join(c for c in alphabet if c not in excluded)
    if not alphabet:
        raise TemplateError("GenerateSecretString excludes every character")
    length = int(spec.get("PasswordLength", 32))
    value = "".join(secrets.choice(alphabet) for _ in range(length))
    template, key = spec.get("SecretStringTemplate"), spec.get("GenerateStringKey")
    if template is not None and key:
        document = json.loads(str(template))
        document[str(key)] = value
        return json.dumps(document)
    return value


def _create_secret(client: Any, name: str, props: Mapping[str, Any], where: str) -> str:
    """Create the secret unless it exists (an existing secret keeps its value); returns its ARN."""
    try:
        return str(client.describe_secret(SecretId=name)["ARN"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    if "SecretString" in props:
        value = props["SecretString"]
        if not isinstance(value, str):
            raise TemplateError(f"{where}: SecretString must be a plain string locally")
    elif "GenerateSecretString" in props:
        value = generate_secret_string(props["GenerateSecretString"] or {})
    else:
        raise TemplateError(f"{where}: needs SecretString or GenerateSecretString")
    request: dict[str, Any] = {"Name": name, "SecretString": value}
    if isinstance(props.get("Description"), str):
        request["Description"] = props["Description"]
    try:
        return str(client.create_secret(**request)["ARN"])
    except ClientError as exc:  # created concurrently by someone else: reuse it
        if exc.response["Error"]["Code"] != "ResourceExistsException":
            raise
        return str(client.describe_secret(SecretId=name)["ARN"])


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def provision(
    template: str | os.PathLike[str] | SamTemplate = DEFAULT_TEMPLATE,
    prefix: str = DEFAULT_PREFIX,
    *,
    parameters: Mapping[str, str] | None = None,
    dynamodb: Any = None,
    sqs: Any = None,
    secretsmanager: Any = None,
) -> Provisioned:
    """Create (or reuse) every table and queue of ``template``, named ``f"{prefix}-{LogicalId}"``, and its
    secrets (under their template ``Name``).

    Without explicit clients, boto3 clients are made for ``AWS_REGION``/``AWS_DEFAULT_REGION`` (default
    us-east-1) and must point at a local endpoint through ``AWS_ENDPOINT_URL``: this never provisions a
    real AWS account. A secrets client not given is made in the DynamoDB client's region.
    """
    sam = template if isinstance(template, SamTemplate) else SamTemplate.from_file(template)
    if dynamodb is None or sqs is None:
        if not (os.environ.get("AWS_ENDPOINT_URL") or "").strip():
            raise RuntimeError("provision() is for the local stack: set AWS_ENDPOINT_URL (moto's server)")
        dynamodb = dynamodb or boto3.client("dynamodb", region_name=_region())
        sqs = sqs or boto3.client("sqs", region_name=_region())

    values = {name: str(p["Default"]) for name, p in sam.parameters.items() if "Default" in p}
    values.update(parameters or {})
    result = Provisioned(template=sam, prefix=prefix, region=dynamodb.meta.region_name, parameters=values)

    for table_id, resource in sam.of_type(TABLE).items():
        name = f"{prefix}-{table_id}"
        result.table_arns[table_id] = _create_table(dynamodb, name, resource.get("Properties") or {})
        result.tables[table_id] = name

    for queue_id in sam.queues_in_creation_order():
        props = sam.properties(queue_id)
        name = f"{prefix}-{queue_id}" + (".fifo" if _truthy(props.get("FifoQueue", False)) else "")
        dlq_id = _single_id((props.get("RedrivePolicy") or {}).get("deadLetterTargetArn"))
        attributes = _queue_attributes(props, result.queue_arns.get(dlq_id) if dlq_id else None)
        url, arn = _create_queue(sqs, name, attributes)
        result.queues[queue_id], result.queue_arns[queue_id], result.queue_names[queue_id] = url, arn, name

    secret_resources = sam.of_type(SECRET)
    if secret_resources and secretsmanager is None:
        secretsmanager = boto3.client("secretsmanager", region_name=result.region)
    for secret_id, resource in secret_resources.items():
        props = resource.get("Properties") or {}
        where = f"{secret_id}.Properties"
        name = result.resolve(props["Name"], f"{where}.Name") if "Name" in props else f"{prefix}-{secret_id}"
        result.secret_arns[secret_id] = _create_secret(secretsmanager, name, props, where)
        result.secrets[secret_id] = name
    return result


def load_template(path: str | os.PathLike[str] = DEFAULT_TEMPLATE) -> SamTemplate:
    """The parsed template, without touching AWS (routes and event sources only)."""
    return SamTemplate.from_file(path)
