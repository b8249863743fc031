"""The SAM template: valid for cfn-lint, and wired as the runtime expects it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from otpgate.aws.template import DISPATCH_TIMEOUT, parse_drivers, render
from otpgate.cli import main
from otpgate.errors import ConfigurationError
from otpgate.events import EventType

SHIPPED = Path(__file__).parents[2] / "deploy" / "aws" / "template.yaml"
DRIVERS = {"capture": 2, "twilio": 10, "my-vonage": 3}
READS = re.compile(r"^[a-z0-9-]+:(Get|Query|Describe|List|Receive)", re.ASCII)
LOG_STREAMS = re.compile(r":log-group:/aws/lambda/\$\{AWS::StackName\}-[a-z0-9_-]+"
                         r":log-stream:\*$")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(render(DRIVERS))
    return loaded


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def target(node: Any) -> str:
    """The logical id a ``Ref`` or ``Fn::GetAtt`` names."""
    return node["Ref"] if "Ref" in node else node["Fn::GetAtt"][0]


def test_cfn_lint_passes_the_shipped_and_a_generated_template(tmp_path: Path) -> None:
    generated = tmp_path / "template.yaml"
    generated.write_text(render(DRIVERS))
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    linted = subprocess.run([str(cfn_lint), str(SHIPPED), str(generated)],
                            capture_output=True, text=True, timeout=120)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_shipped_template_is_what_the_generator_makes_for_the_capture_driver() -> None:
    assert SHIPPED.read_text() == render({"capture": 2})


def test_each_driver_has_a_function_fed_by_its_own_filtered_queue(
    template: dict[str, Any],
) -> None:
    functions = of_type(template, "AWS::Serverless::Function")
    subscriptions = of_type(template, "AWS::SNS::Subscription")
    for driver, concurrency in DRIVERS.items():
        [function] = [f["Properties"] for f in functions.values()
                      if f["Properties"].get("Environment", {}).get("Variables", {})
                      .get("OTPGATE_DRIVER") == driver]
        assert function["Handler"] == "otpgate.aws.dispatch.handler"
        assert function["ReservedConcurrentExecutions"] == concurrency
        [event] = function["Events"].values()
        assert event["Type"] == "SQS"
        assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        queue = target(event["Properties"]["Queue"])
        [subscription] = [s["Properties"] for s in subscriptions.values()
                          if target(s["Properties"]["Endpoint"]) == queue]
        assert target(subscription["TopicArn"]) == "DispatchTopic"
        assert subscription["FilterPolicyScope"] == "MessageAttributes"
        assert subscription["FilterPolicy"] == {"type": [EventType.DISPATCH.value],
                                                "driver": [driver]}
    handlers = sorted(f["Properties"]["Handler"] for f in functions.values())
    assert handlers == sorted(["otpgate.aws.api.handler", "otpgate.aws.receipts.handler",
                               "otpgate.aws.sweep.handler",
                               *["otpgate.aws.dispatch.handler"] * len(DRIVERS)])


def test_every_queue_has_a_dead_letter_queue_and_outlasts_its_function(
    template: dict[str, Any],
) -> None:
    queues = of_type(template, "AWS::SQS::Queue")
    dead = {target(q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
            for q in queues.values() if "RedrivePolicy" in q["Properties"]}
    consumed = {name for name in queues if name not in dead}
    assert consumed and all("RedrivePolicy" in queues[n]["Properties"] for n in consumed)
    assert dead <= set(queues)
    timeouts = {}
    for function in of_type(template, "AWS::Serverless::Function").values():
        properties = function["Properties"]
        for event in properties["Events"].values():
            if event["Type"] == "SQS":
                timeouts[target(event["Properties"]["Queue"])] = properties.get(
                    "Timeout", template["Globals"]["Function"]["Timeout"])
    assert set(timeouts) == consumed
    for name, timeout in timeouts.items():
        assert queues[name]["Properties"]["VisibilityTimeout"] >= 6 * timeout
    assert max(timeouts.values()) == DISPATCH_TIMEOUT


def test_every_queue_alarms_on_its_dead_letters_and_on_its_oldest_message(
    template: dict[str, Any],
) -> None:
    alarms = of_type(template, "AWS::CloudWatch::Alarm").values()
    watched = {(a["Properties"]["MetricName"],
                a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]) for a in alarms}
    queues = of_type(template, "AWS::SQS::Queue")
    for name, queue in queues.items():
        if "RedrivePolicy" in queue["Properties"]:
            dlq = target(queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
            assert ("ApproximateAgeOfOldestMessage", name) in watched
            assert ("ApproximateNumberOfMessagesVisible", dlq) in watched


def test_no_role_may_write_with_a_wildcard_action_or_resource(
    template: dict[str, Any],
) -> None:
    roles = of_type(template, "AWS::IAM::Role")
    functions = of_type(template, "AWS::Serverless::Function").values()
    assert {target(f["Properties"]["Role"]) for f in functions} == set(roles)
    assert all("Policies" not in f["Properties"] for f in functions), \
        "SAM policy templates would add managed policies with wildcard resources"
    for name, role in roles.items():
        for policy in role["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                actions = actions if isinstance(actions, list) else [actions]
                assert not any("*" in a for a in actions), (name, actions)
                if all(READS.match(a) for a in actions):
                    continue
                resources = statement["Resource"]
                for resource in resources if isinstance(resources, list) else [resources]:
                    text = resource if isinstance(resource, str) else \
                        resource.get("Fn::Sub", "")
                    assert text != "*", (name, actions)
                    # A function's own log streams are named by Lambda: the one wildcard.
                    assert "*" not in text or LOG_STREAMS.search(text), (name, text)


def test_no_secret_sits_in_plain_text_in_an_environment(template: dict[str, Any]) -> None:
    environments = [template["Globals"]["Function"]["Environment"]["Variables"]]
    environments += [f["Properties"].get("Environment", {}).get("Variables", {})
                     for f in of_type(template, "AWS::Serverless::Function").values()]
    secretive = re.compile(r"SECRET|TOKEN|PASSWORD|DRIVERS_", re.ASCII)
    for variables in environments:
        for name, value in variables.items():
            if secretive.search(name):
                assert isinstance(value, dict) and "Fn::Sub" in value, name
                assert value["Fn::Sub"].startswith(("ssm:", "secretsmanager:")), name
            if isinstance(value, str):
                assert "@" not in value and "://" not in value, name


def test_every_function_is_told_the_public_url_receipts_come_back_to(
    template: dict[str, Any],
) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["OTPGATE_PUBLIC_URL"] == {
        "Fn::If": ["HasPublicUrl", {"Ref": "PublicUrl"}, {"Ref": "AWS::NoValue"}]}
    assert template["Parameters"]["PublicUrl"]["Default"] == ""


def test_the_template_command_writes_the_template_for_the_drivers_named(
    tmp_path: Path,
) -> None:
    out = tmp_path / "t.yaml"
    done = CliRunner().invoke(main, ["aws", "template", "--drivers",
                                     "capture,twilio=10,my-vonage=3", "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert out.read_text() == render(DRIVERS)
    refused = CliRunner().invoke(main, ["aws", "template", "--drivers", "Bad Name"])
    assert refused.exit_code != 0 and "NAME[=CONCURRENCY]" in refused.output


def test_driver_lists_are_read_with_their_concurrency_or_refused() -> None:
    assert parse_drivers("capture, twilio=10") == {"capture": 2, "twilio": 10}
    for bad in ("", "twilio=ten", "a-b,a_b"):
        with pytest.raises(ConfigurationError):
            parse_drivers(bad)
