"""The one price table every cost figure in this repository is computed from (`make bench`, `rtp cost`).

US East (N. Virginia) list prices, on-demand, no free tier and no volume tiers (the first tier of each
price applies), looked up on PRICES_DATE. Each price names where it was read. AWS's own pricing pages
render most figures client-side, so the stored copies of those pages often show no number: where the
figure was read from a secondary source quoting AWS, `source` lists that page after AWS's. A figure
that could not be found in the material available is kept with `usd=None` and the reason in `note`:
estimates that need it say so next to the line instead of inventing a number.

Re-check these against the AWS pages before quoting a total; change them here only.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_DATE = "2026-11-28"
REGION = "us-east-1"


@dataclass(frozen=True)
class Price:
    key: str
    usd: float | None  # per `unit`; None: not found in the material available (see note)
    unit: str
    source: tuple[str, ...]
    note: str = ""

    @property
    def known(self) -> bool:
        return self.usd is not None


_DDB_ON_DEMAND = (
    "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    # The stored AWS page shows the units, not the figures; the November 2024 on-demand price cut to
    # $0.625/$0.125 per million is quoted here:
    "https://airbyte.com/data-engineering-resources/dynamodb-pricing",
    "https://www.jusdb.com/blog/dynamodb-cost-optimization-a-comprehensive-guide-by-jusdb",
)
_LAMBDA = (
    "https://aws.amazon.com/lambda/pricing/",
    "https://git.mcrn.ar/mariano/lambda_local_runner/src/commit/957e45b8adae23ce50b966346229585b5df18b4d/"
    "docs/lambdas-md/lambda-13-cost.md",
)
_S3 = (
    "https://aws.amazon.com/s3/pricing/",
    "https://gist.github.com/allenheltondev/d028926b7fe3b0656c96af9140ab55e3",
)
# The classes the raw bucket may move requests to (stack/retention.py). The stored AWS page renders no
# figures; these are read from summaries quoting it (us-east-1), several agreeing.
_S3_CLASSES = (
    "https://aws.amazon.com/s3/pricing/",
    "https://awsnegotiations.com/s3-storage.html",
)
_S3_TRANSITIONS = (
    "https://aws.amazon.com/s3/pricing/",
    "https://www.apptio.com/blog/how-aws-s3-pricing-works/",
)
_SQS = (
    "https://aws.amazon.com/sqs/pricing/",
    "https://www.factualminds.com/blog/amazon-sqs-pricing-64kb-rule-fifo-vs-standard/",
    "https://unanswered.io/guide/aws-sqs-pricing-and-cost-optimization",
    "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-batch-api.html",
)
_CLOUDWATCH = (
    "https://aws.amazon.com/cloudwatch/pricing/",
    "https://www.factualminds.com/blog/amazon-cloudwatch-pricing-metrics-logs-alarms-dashboards/",
    "https://github.com/vreutova/infracost-idem-support/pull/2",
    "https://signoz.io/guides/cloudwatch-pricing",
)
_WAF = (
    "https://aws.amazon.com/waf/pricing/",
    "https://c3x.dev/blog/aws-waf-cost-explained/",
    "https://awsnegotiations.com/waf-pricing-strategy.html",
)

PRICES: dict[str, Price] = {
    p.key: p
    for p in (
        Price("dynamodb.write_request_unit", 0.625 / 1e6, "write request unit", _DDB_ON_DEMAND),
        Price("dynamodb.read_request_unit", 0.125 / 1e6, "read request unit", _DDB_ON_DEMAND),
        Price(
            "dynamodb.storage_gb_month",
            0.25,
            "GB-month",
            ("https://aws.amazon.com/dynamodb/pricing/",),
            "Standard table class; the first 25 GB a month are free (not applied)",
        ),
        Price(
            "dynamodb.pitr_gb_month",
            0.20,
            "GB-month",
            (
                "https://aws.amazon.com/dynamodb/pricing/",
                "https://gist.github.com/allenheltondev/d028926b7fe3b0656c96af9140ab55e3",
            ),
            "continuous backups (point-in-time recovery), charged on the table's size",
        ),
        Price("s3.put_request", 0.005 / 1000, "PUT/COPY/POST/LIST request", _S3),
        Price("s3.get_request", 0.0004 / 1000, "GET and other request", _S3),
        Price(
            "s3.storage_gb_month",
            0.023,
            "GB-month",
            (*_S3, "https://gist.github.com/EverettBerry/a37438006529a55f42da6fdbc44a505c"),
            "S3 Standard, first 50 TB",
        ),
        Price("s3.standard_ia.storage_gb_month", 0.0125, "GB-month (S3 Standard-IA)", _S3_CLASSES),
        Price("s3.onezone_ia.storage_gb_month", 0.01, "GB-month (S3 One Zone-IA)", _S3_CLASSES),
        Price(
            "s3.glacier_ir.storage_gb_month", 0.004, "GB-month (S3 Glacier Instant Retrieval)", _S3_CLASSES
        ),
        Price(
            "s3.standard_ia.transition_request",
            0.01 / 1000,
            "lifecycle transition request into S3 Standard-IA",
            _S3_TRANSITIONS,
        ),
        Price(
            "s3.onezone_ia.transition_request",
            0.01 / 1000,
            "lifecycle transition request into S3 One Zone-IA",
            _S3_TRANSITIONS,
        ),
        Price(
            "s3.glacier_ir.transition_request",
            0.02 / 1000,
            "lifecycle transition request into S3 Glacier Instant Retrieval",
            ("https://aws.amazon.com/s3/pricing/",),
            "read from a summary of the AWS page found by text search ($0.01 per 1,000 into the IA classes, "
            "$0.02 into Glacier Instant Retrieval); re-check on the AWS page",
        ),
        Price(
            "sqs.request",
            0.40 / 1e6,
            "request (per 64 KB chunk)",
            _SQS,
            "standard queue; every 64 KB chunk of a payload is billed as one request; a batch action "
            "(up to 10 messages) is one request",
        ),
        Price("lambda.request", 0.20 / 1e6, "invocation", _LAMBDA),
        Price(
            "lambda.gb_second_arm64",
            0.0000133334,
            "GB-second (arm64)",
            _LAMBDA,
            "first tier (7.5 billion GB-s)",
        ),
        Price(
            "lambda.provisioned_gb_second_arm64",
            0.0000033334,
            "GB-second provisioned (arm64)",
            ("https://aws.amazon.com/lambda/pricing/",),
            "the stored copy of the AWS page renders no figure; read from public write-ups quoting it "
            "(found by text search, several agreeing); "
            "invocations served by provisioned concurrency are billed at a lower duration rate, which this "
            "estimate does not apply (it charges the on-demand rate: an upper bound)",
        ),
        Price(
            "apigateway.rest_request",
            3.50 / 1e6,
            "REST API request",
            (
                "https://aws.amazon.com/api-gateway/pricing/",
                "https://docs.aws.amazon.com/whitepapers/latest/best-practices-api-gateway-private-apis-integration/cost-optimization.html",
            ),
            "first 333 million a month",
        ),
        Price(
            "kms.key_month",
            1.00,
            "customer managed key-month",
            ("https://aws.amazon.com/kms/pricing/",),
            "each automatic rotation adds $1/month for the retained key material (capped after the second "
            "rotation, per https://cloudburn.io/blog/aws-kms-pricing); not applied here",
        ),
        Price(
            "kms.request",
            0.03 / 10_000,
            "KMS API request",
            ("https://aws.amazon.com/kms/pricing/", "https://www.wring.co/blog/aws-kms-pricing-guide"),
        ),
        Price("logs.ingest_gb", 0.50, "GB ingested (CloudWatch Logs, standard)", _CLOUDWATCH),
        Price("logs.storage_gb_month", 0.03, "GB-month archived (CloudWatch Logs)", _CLOUDWATCH),
        Price("cloudwatch.alarm_month", 0.10, "standard-resolution alarm-month", _CLOUDWATCH),
        Price(
            "cloudwatch.dashboard_month",
            3.00,
            "dashboard-month",
            _CLOUDWATCH,
            "the first 3 dashboards are free (not applied)",
        ),
        Price(
            "cloudwatch.custom_metric_month", 0.30, "custom metric-month", _CLOUDWATCH, "first 10,000 metrics"
        ),
        Price(
            "xray.trace_recorded",
            5.00 / 1e6,
            "trace recorded",
            (
                "https://aws.amazon.com/xray/pricing/",
                "https://aws.amazon.com/de/xray/pricing/",
                "https://awsnegotiations.com/x-ray-pricing-strategy.html",
            ),
            "the first 100,000 traces a month are free (not applied)",
        ),
        Price("waf.web_acl_month", 5.00, "web ACL-month", _WAF),
        Price("waf.rule_month", 1.00, "rule-month (a managed rule group counts as one)", _WAF),
        Price("waf.request", 0.60 / 1e6, "request inspected", _WAF),
    )
}


def price(key: str) -> Price:
    return PRICES[key]
