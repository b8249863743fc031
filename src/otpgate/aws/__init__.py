"""The AWS runtime: Lambda handlers over the same core, on DynamoDB, SNS and SQS.

```
client ─▶ API Gateway (HTTP API) ─▶ api.handler ─▶ DynamoDB: state + outbox item
                                         └──────────▶ SNS dispatch topic ─┬▶ SQS dispatch-<driver>
                                                                          │    ─▶ dispatch.handler
SNS events topic ◀── every other event ◀── api, dispatch, receipts, sweep │       (OTPGATE_DRIVER)
   ├▶ the app's own subscriptions                                         └▶ …one per driver
   └▶ SQS delivery-failed ─▶ sweep.handler ◀── EventBridge schedule (expiry, republish)
```
Handlers: ``api.handler``, ``receipts.handler``, ``dispatch.handler``, ``sweep.handler``;
``host`` is what a cold start builds, ``refs`` resolves ``ssm:``/``secretsmanager:``
settings, ``provision`` and ``template`` make the resources (locally, and on AWS).
"""
