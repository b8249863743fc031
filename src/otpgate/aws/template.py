"""The AWS SAM template of a deployment, for the drivers it sends with
(``otpgate aws template --drivers twilio=10,vonage=5``; ``deploy/aws/template.yaml`` is
this for the capture driver).

Per driver: a queue (visibility timeout 6 × the function's timeout) with its dead-letter
queue, subscribed to the dispatch topic with a filter policy on the ``driver`` attribute,
and a dispatch function with reserved concurrency (so that a provider's rate is kept) and
alarms on the dead-letter queue's depth and on the age of the oldest message. Besides:
the HTTP API and its function, the receipts function, the sweep (every minute, and on the
failure queue), both topics and the table with its TTL. Every function has a role of its
own that names each resource it may write to; secrets reach the functions as ``ssm:``
references, resolved at cold start.
"""

from __future__ import annotations

import re
from typing import Any

from otpgate.aws import table
from otpgate.aws.resources import queue_name
from otpgate.dispatch import subscription_for
from otpgate.errors import ConfigurationError
from otpgate.housekeeping import FAILURES

DISPATCH_TIMEOUT = 30
"""Seconds a dispatch function may run (a driver call is bounded by the lease, 20 s)."""
API_TIMEOUT = 10
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}", re.ASCII)

Node = dict[str, Any]


def _sub(text: str) -> Node:
    return {"Fn::Sub": text}


def _ref(name: str) -> Node:
    return {"Ref": name}


def _arn(name: str) -> Node:
    return {"Fn::GetAtt": [name, "Arn"]}


def logical(name: str) -> str:
    """A driver name as part of a logical id (``my-twilio`` → ``MyTwilio``)."""
    return "".join(part.capitalize() for part in re.split(r"[-_]", name))


def parse_drivers(spec: str) -> dict[str, int]:
    """``capture,twilio=10`` → driver name → reserved concurrency (default 2)."""
    drivers: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, count = part.partition("=")
        if not _NAME.fullmatch(name) or (count and not count.isdigit()):
            raise ConfigurationError(f"--drivers takes NAME[=CONCURRENCY],…, not {part!r}")
        if logical(name) in {logical(n) for n in drivers}:
            raise ConfigurationError(f"driver {name!r} is named twice")
        drivers[name] = int(count or 2)
    if not drivers:
        raise ConfigurationError("--drivers names no driver")
    return drivers


def _parameters() -> Node:
    ssm = {"Type": "String", "AllowedPattern": "^/[A-Za-z0-9_./-]+$"}
    return {
        "SecretKeyParameter": {**ssm, "Default": "/otpgate/secret-key", "Description":
                               "SSM SecureString holding OTPGATE_SECRET_KEY"},
        "SmsDriversParameter": {**ssm, "Default": "/otpgate/drivers/sms", "Description":
                                "SSM SecureString holding the SMS driver URLs"},
        "EmailDriversParameter": {**ssm, "Default": "/otpgate/drivers/email", "Description":
                                  "SSM SecureString holding the e-mail driver URLs"},
        "AllowCapture": {"Type": "String", "Default": "false",
                         "AllowedValues": ["true", "false"], "Description":
                         "Allow the capture driver (a demo: messages kept, not sent)"},
        "MaxDeliveries": {"Type": "Number", "Default": 8, "MinValue": 2, "MaxValue": 50,
                          "Description": "Receives of a dispatch before its dead-letter queue"},
        "AlarmTopicArn": {"Type": "String", "Default": "",
                          "Description": "SNS topic the alarms notify (empty: none)"},
        "PublicUrl": {"Type": "String", "Default": "", "AllowedPattern": "^(https://[^/]+)?$",
                      "Description": "The origin the API is reached at (https://otp.example."
                      "com, or the ApiUrl output after a first deploy): the base of the "
                      "receipt callbacks given to providers (empty: no callbacks)"},
        "LogLevel": {"Type": "String", "Default": "info",
                     "AllowedValues": ["debug", "info", "warning", "error"]},
    }


def _globals() -> Node:
    return {"Function": {
        "Runtime": "python3.12", "Architectures": ["arm64"], "MemorySize": 512,
        "CodeUri": "package/", "Timeout": API_TIMEOUT,
        "Environment": {"Variables": {
            "OTPGATE_STORE_URL": _sub("dynamodb://${Table}?region=${AWS::Region}"
                                      "&queue_prefix=${AWS::StackName}"),
            "OTPGATE_TOPIC_ARN": _ref("DispatchTopic"),
            "OTPGATE_EVENTS_TOPIC_ARN": _ref("EventsTopic"),
            "OTPGATE_SECRET_KEY": _sub("ssm:${SecretKeyParameter}"),
            "OTPGATE_DRIVERS_SMS": _sub("ssm:${SmsDriversParameter}"),
            "OTPGATE_DRIVERS_EMAIL": _sub("ssm:${EmailDriversParameter}"),
            "OTPGATE_BUS_MAX_DELIVERIES": _ref("MaxDeliveries"),
            "OTPGATE_BUS_LEASE": "20",
            "OTPGATE_ALLOW_CAPTURE": _ref("AllowCapture"),
            "OTPGATE_LOG_LEVEL": _ref("LogLevel"),
            "OTPGATE_PUBLIC_URL": {"Fn::If": ["HasPublicUrl", _ref("PublicUrl"),
                                              _ref("AWS::NoValue")]},
        }},
    }}


def _table() -> Node:
    definition = table.table_definition("unused")
    return {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain", "Properties": {
                "BillingMode": definition["BillingMode"],
                "AttributeDefinitions": definition["AttributeDefinitions"],
                "KeySchema": definition["KeySchema"],
                "GlobalSecondaryIndexes": definition["GlobalSecondaryIndexes"],
                "TimeToLiveSpecification": {"AttributeName": table.TTL_ATTRIBUTE,
                                            "Enabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "SSESpecification": {"SSEEnabled": True}}}


def _queue(resources: Node, prefix: str, subscription: str, topic: str,
           policy: Node, timeout: int) -> str:
    """A queue, its dead-letter queue, its filtered subscription and its alarms; the
    queue's logical id."""
    name = queue_name("${AWS::StackName}", subscription)
    queue, dlq = f"{prefix}Queue", f"{prefix}DeadLetterQueue"
    resources[dlq] = {"Type": "AWS::SQS::Queue", "Properties": {
        "QueueName": _sub(f"{name}-dlq"), "MessageRetentionPeriod": 14 * 24 * 3600,
        "SqsManagedSseEnabled": True}}
    resources[queue] = {"Type": "AWS::SQS::Queue", "Properties": {
        "QueueName": _sub(name), "VisibilityTimeout": 6 * timeout,
        "MessageRetentionPeriod": 4 * 3600, "SqsManagedSseEnabled": True,
        "RedrivePolicy": {"deadLetterTargetArn": _arn(dlq),
                          "maxReceiveCount": _ref("MaxDeliveries")}}}
    resources[f"{prefix}Subscription"] = {"Type": "AWS::SNS::Subscription", "Properties": {
        "TopicArn": _ref(topic), "Protocol": "sqs", "Endpoint": _arn(queue),
        "FilterPolicyScope": "MessageAttributes", "FilterPolicy": policy,
        "RawMessageDelivery": False}}
    resources[f"{prefix}QueuePolicy"] = {"Type": "AWS::SQS::QueuePolicy", "Properties": {
        "Queues": [_ref(queue)], "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": _arn(queue),
            "Condition": {"ArnEquals": {"aws:SourceArn": _ref(topic)}}}]}}}
    alarm = {"Namespace": "AWS/SQS", "Statistic": "Maximum", "Period": 60,
             "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold",
             "TreatMissingData": "notBreaching",
             "AlarmActions": {"Fn::If": ["HasAlarmTopic", [_ref("AlarmTopicArn")],
                                         _ref("AWS::NoValue")]}}
    resources[f"{prefix}DeadLettersAlarm"] = {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        **alarm, "AlarmDescription": _sub(f"{subscription}: events in the dead-letter queue"),
        "MetricName": "ApproximateNumberOfMessagesVisible", "Threshold": 0,
        "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}]}}
    resources[f"{prefix}OldestMessageAlarm"] = {"Type": "AWS::CloudWatch::Alarm",
                                                "Properties": {
        **alarm, "AlarmDescription": _sub(f"{subscription}: the oldest event waits > 2 min"),
        "MetricName": "ApproximateAgeOfOldestMessage", "Threshold": 120,
        "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]}}
    return queue


def _statements(function: str, writes: bool, publishes: tuple[str, ...],
                polls: str | None) -> list[Node]:
    """What a function may do: read the table and its settings, write items and publish
    to named topics where it must, poll its own queue; nothing else."""
    logs, ssm = (f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}"
                 for service in ("logs", "ssm"))
    statements: list[Node] = [
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": _sub(f"{logs}:log-group:/aws/lambda/${{AWS::StackName}}-{function}"
                          ":log-stream:*")},
        {"Effect": "Allow", "Action": ["ssm:GetParameters"], "Resource": [
            _sub(f"{ssm}:parameter${{{p}}}") for p in
            ("SecretKeyParameter", "SmsDriversParameter", "EmailDriversParameter")]},
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"], "Resource": [
            _arn("Table"), _sub(f"${{Table.Arn}}/index/{table.INDEX}")]},
        {"Effect": "Allow", "Action": ["sns:GetTopicAttributes"],
         "Resource": _ref("DispatchTopic")},
    ]
    if writes:
        statements.append({"Effect": "Allow", "Action": [
            "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
            "dynamodb:ConditionCheckItem"], "Resource": _arn("Table")})
    if publishes:
        statements.append({"Effect": "Allow", "Action": ["sns:Publish"],
                           "Resource": [_ref(t) for t in publishes]})
    if polls is not None:
        statements.append({"Effect": "Allow", "Action": [
            "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl", "sqs:ChangeMessageVisibility",
            "sqs:SendMessage"],  # a deferred message goes back to its queue, delayed
            "Resource": _arn(polls)})
    return statements


def _function(resources: Node, prefix: str, function: str, handler: str, *,
              statements: list[Node], events: Node, **properties: Any) -> None:
    """A function with a role and a log group of its own."""
    resources[f"{prefix}Role"] = {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]},
        "Policies": [{"PolicyName": "otpgate", "PolicyDocument": {
            "Version": "2012-10-17", "Statement": statements}}]}}
    resources[f"{prefix}LogGroup"] = {"Type": "AWS::Logs::LogGroup",
                                      "DeletionPolicy": "Delete",
                                      "UpdateReplacePolicy": "Delete", "Properties": {
        "LogGroupName": _sub(f"/aws/lambda/${{AWS::StackName}}-{function}"),
        "RetentionInDays": 30}}
    resources[f"{prefix}Function"] = {"Type": "AWS::Serverless::Function",
                                      "DependsOn": [f"{prefix}LogGroup"], "Properties": {
        "FunctionName": _sub(f"${{AWS::StackName}}-{function}"), "Handler": handler,
        "Role": _arn(f"{prefix}Role"), "Events": events, **properties}}


def _sqs_event(queue: str, concurrency: int | None = None) -> Node:
    properties: Node = {"Queue": _arn(queue), "BatchSize": 10,
                        "FunctionResponseTypes": ["ReportBatchItemFailures"]}
    if concurrency is not None and concurrency >= 2:
        properties["ScalingConfig"] = {"MaximumConcurrency": concurrency}
    return {"Type": "SQS", "Properties": properties}


def build(drivers: dict[str, int]) -> Node:
    """The template for ``drivers`` (name → reserved concurrency of its function)."""
    resources: Node = {
        "Table": _table(),
        "DispatchTopic": {"Type": "AWS::SNS::Topic", "Properties": {
            "TopicName": _sub("${AWS::StackName}-dispatch")}},
        "EventsTopic": {"Type": "AWS::SNS::Topic", "Properties": {
            "TopicName": _sub("${AWS::StackName}-events")}},
        "HttpApi": {"Type": "AWS::Serverless::HttpApi", "Properties": {
            "DefaultRouteSettings": {"ThrottlingBurstLimit": 200,
                                     "ThrottlingRateLimit": 100}}},
    }
    both = ("DispatchTopic", "EventsTopic")
    api_event = {"Type": "HttpApi", "Properties": {"ApiId": _ref("HttpApi")}}
    _function(resources, "Api", "api", "otpgate.aws.api.handler",
              statements=_statements("api", True, both, None),
              events={"Api": api_event})
    _function(resources, "Receipts", "receipts", "otpgate.aws.receipts.handler",
              statements=_statements("receipts", True, ("EventsTopic",), None),
              events={method.capitalize(): {"Type": "HttpApi", "Properties": {
                  "ApiId": _ref("HttpApi"), "Path": "/v1/receipts/{driver}",
                  "Method": method}} for method in ("POST", "GET")})
    failures = _queue(resources, "Failures", FAILURES.name, "EventsTopic",
                      {"type": list(FAILURES.filter.rules["type"])}, API_TIMEOUT)
    _function(resources, "Sweep", "sweep", "otpgate.aws.sweep.handler",
              statements=_statements("sweep", True, both, failures),
              events={"Schedule": {"Type": "Schedule", "Properties": {
                  "Schedule": "rate(1 minute)"}}, "Failures": _sqs_event(failures)},
              ReservedConcurrentExecutions=2)
    for name, concurrency in drivers.items():
        sub = subscription_for(name)
        prefix = f"Dispatch{logical(name)}"
        queue = _queue(resources, prefix, sub.name, "DispatchTopic",
                       {k: list(v) for k, v in sub.filter.rules.items()}, DISPATCH_TIMEOUT)
        _function(resources, prefix, f"dispatch-{name}", "otpgate.aws.dispatch.handler",
                  statements=_statements(f"dispatch-{name}", True, both, queue),
                  events={"Queue": _sqs_event(queue, concurrency)},
                  Timeout=DISPATCH_TIMEOUT, ReservedConcurrentExecutions=concurrency,
                  Environment={"Variables": {"OTPGATE_DRIVER": name}})
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": "otpgate on Lambda, DynamoDB, SNS and SQS; drivers: "
                       + ", ".join(drivers) + " (made by otpgate aws template)",
        "Parameters": _parameters(),
        "Conditions": {"HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [
            _ref("AlarmTopicArn"), ""]}]},
            "HasPublicUrl": {"Fn::Not": [{"Fn::Equals": [_ref("PublicUrl"), ""]}]}},
        "Globals": _globals(),
        "Resources": resources,
        "Outputs": {
            "ApiUrl": {"Description": "The HTTP API", "Value": _sub(
                "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}")},
            "TableName": {"Value": _ref("Table")},
            "DispatchTopicArn": {"Value": _ref("DispatchTopic")},
            "EventsTopicArn": {"Description": "Subscribe the app's own queue or endpoint "
                               "to the lifecycle events here", "Value": _ref("EventsTopic")},
        },
    }


def render(drivers: dict[str, int]) -> str:
    """The template as YAML."""
    import yaml

    header = ("# otpgate on AWS (SAM). Made by `otpgate aws template --drivers "
              + ",".join(f"{n}={c}" for n, c in drivers.items())
              + "`; edit by running it again.\n")
    return header + yaml.safe_dump(build(drivers), sort_keys=False, width=100,
                                   allow_unicode=True)
