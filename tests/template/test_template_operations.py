"""template.yaml's operational settings: alarm notifications, consumer concurrency bounds and route throttles,
checked on the template as SAM translates it (what CloudFormation would create), and linted."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from samtranslator.translator.transform import transform

from tests.template.test_template import _FixedManagedPolicies, _sam_template

pytestmark = pytest.mark.template

WEBHOOK_ROUTE_KEYS = {"POST /alipay/gateway", "POST /alipay/notify"}


def _translate(sam: dict[str, Any]) -> dict[str, Any]:
    sam = copy.deepcopy(sam)
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


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return _translate(_sam_template())


def _of_type(cfn: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in cfn["Resources"].items() if r["Type"] == resource_type}


def test_every_alarm_notifies_the_alarm_topic_when_it_fires_and_clears(cfn: dict[str, Any]) -> None:
    alarms = _of_type(cfn, "AWS::CloudWatch::Alarm")
    assert {"EventsDLQDepthAlarm", "OutboundDLQDepthAlarm", "EventsBacklogAlarm"} <= set(alarms)
    for lid, alarm in alarms.items():
        assert alarm["Properties"].get("AlarmActions") == [{"Ref": "AlarmTopic"}], lid
        assert alarm["Properties"].get("OKActions") == [{"Ref": "AlarmTopic"}], lid
    assert cfn["Resources"]["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    assert cfn["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": "AlarmTopic"}


def test_cloudwatch_may_publish_to_the_alarm_topic_from_this_account_only(cfn: dict[str, Any]) -> None:
    (policy,) = _of_type(cfn, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": "AlarmTopic"}]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Action"] == "sns:Publish" and statement["Resource"] == {"Ref": "AlarmTopic"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_the_email_subscription_exists_only_when_an_address_is_given(cfn: dict[str, Any]) -> None:
    parameter = _sam_template()["Parameters"]["AlarmEmail"]
    assert parameter["Default"] == ""
    (subscription,) = _of_type(cfn, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email",
                                          "Endpoint": {"Ref": "AlarmEmail"}}
    assert cfn["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    import re

    pattern = parameter["AllowedPattern"]
    assert re.fullmatch(pattern, "") and re.fullmatch(pattern, "ops@example.com")
    assert not re.fullmatch(pattern, "not an address")


@pytest.mark.parametrize(
    ("function_id", "parameter", "default"),
    [("MetricsFunction", "EventsConsumerMaxConcurrency", "20"),
     ("MessageGatewayFunction", "OutboundConsumerMaxConcurrency", "10")],
)
def test_every_sqs_consumer_has_a_maximum_concurrency_from_a_parameter(
    cfn: dict[str, Any], function_id: str, parameter: str, default: str
) -> None:
    queues = set(_of_type(cfn, "AWS::SQS::Queue"))
    mappings = [m["Properties"] for m in _of_type(cfn, "AWS::Lambda::EventSourceMapping").values()]
    sqs = [m for m in mappings if m["EventSourceArn"].get("Fn::GetAtt", [""])[0] in queues]
    assert sqs and all("MaximumConcurrency" in m.get("ScalingConfig", {}) for m in sqs)
    (mine,) = [m for m in sqs if m["FunctionName"] == {"Ref": function_id}]
    assert mine["ScalingConfig"] == {"MaximumConcurrency": {"Ref": parameter}}
    spec = _sam_template()["Parameters"][parameter]
    assert (spec["Type"], spec["Default"], spec["MinValue"], spec["MaxValue"]) == ("Number", default, 2, 1000)


def _stage(cfn: dict[str, Any]) -> dict[str, Any]:
    (stage,) = _of_type(cfn, "AWS::ApiGatewayV2::Stage").values()
    return stage["Properties"]


def test_webhook_routes_have_their_own_throttle_and_internal_routes_the_default(cfn: dict[str, Any]) -> None:
    stage = _stage(cfn)
    assert stage["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": {"Ref": "InternalApiThrottleBurst"},
        "ThrottlingRateLimit": {"Ref": "InternalApiThrottleRate"},
    }
    assert set(stage["RouteSettings"]) == WEBHOOK_ROUTE_KEYS
    for key in WEBHOOK_ROUTE_KEYS:
        assert stage["RouteSettings"][key] == {
            "ThrottlingBurstLimit": {"Ref": "WebhookThrottleBurst"},
            "ThrottlingRateLimit": {"Ref": "WebhookThrottleRate"},
        }
    # the route keys name routes the API has (a stage naming a missing route fails to deploy)
    paths = cfn["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
    have = {f"{method.upper()} {path}" for path, ops in paths.items() for method in ops}
    assert have >= WEBHOOK_ROUTE_KEYS


def test_throttle_defaults_fit_under_the_account_limit_all_routes_together(cfn: dict[str, Any]) -> None:
    p = _sam_template()["Parameters"]
    webhook = int(p["WebhookThrottleRate"]["Default"]), int(p["WebhookThrottleBurst"]["Default"])
    internal = int(p["InternalApiThrottleRate"]["Default"]), int(p["InternalApiThrottleBurst"]["Default"])
    assert webhook[0] > internal[0] and webhook[1] >= webhook[0] and internal[1] >= internal[0]
    paths = cfn["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
    internal_routes = sum(len(ops) for ops in paths.values()) - len(WEBHOOK_ROUTE_KEYS)
    # API Gateway's default account-level throttle per region: 10,000 requests/s, burst 5,000. With every route
    # at its own limit at once, the account limit is still not reached.
    assert len(WEBHOOK_ROUTE_KEYS) * webhook[0] + internal_routes * internal[0] <= 10_000
    assert webhook[1] <= 5_000


def test_the_template_with_an_alarm_email_translates_and_lints_clean() -> None:
    sam = _sam_template()
    sam["Parameters"]["AlarmEmail"]["Default"] = "ops@example.com"
    cfn = _translate(sam)
    matches = lint(json.dumps(cfn), config=ManualArgs(regions=["us-east-1"]))
    assert [f"{m.rule.id} {m.message}" for m in matches if not m.rule.id.startswith("I")] == []
