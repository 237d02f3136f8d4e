"""The regions this stack can deploy to: where the Powertools layer's public SSM parameter exists.

The functions take their runtime dependencies from the AWS-published Powertools layer, resolved at deploy
time from the public parameter `/aws/service/powertools/python/arm64/python3.14/<version>`
(stack/functions.py). Powertools writes that parameter only in the regions its release workflow targets;
anywhere else CloudFormation fails at change-set time ("Unable to fetch parameters ... from parameter
store for this account"), after a long wait and with no hint of the cause. So `stack/config.py` refuses a
`region:` outside this list when the file is loaded, offline.

Source (the list below is this matrix, verbatim, 32 regions):
- Powertools for AWS Lambda (Python), "Lambda Layer" / "AWS SSM Parameter Store" in the installation docs,
  https://docs.aws.amazon.com/powertools/python/latest/getting-started/install/ (the per-region ARN tables
  come from docs/includes/_layer_homepage_arm64.md), and the workflow that writes the parameters,
  https://github.com/aws-powertools/powertools-lambda-python/blob/develop/.github/workflows/update_ssm.yml
  (its `matrix.region`; Python 3.14 was added to the same matrix, see PR #7695).
- Regions AWS opened later are not published yet: ap-southeast-6 (New Zealand,
  https://github.com/aws-powertools/powertools-lambda-python/issues/7355) and eusc-de-east-1
  (https://github.com/aws-powertools/powertools-lambda-python/issues/8000). GovCloud and China have
  separately published layers but no parameters from this workflow.

`rtp doctor` checks the live parameter in the target account and region before a deploy; this list is the
offline guard. When Powertools announces a new region, add it here (tests/test_config.py pins the count).
"""

from __future__ import annotations

POWERTOOLS_LAYER_REGIONS: frozenset[str] = frozenset(
    {
        "af-south-1",
        "ap-east-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-southeast-5",
        "ap-southeast-7",
        "ca-central-1",
        "ca-west-1",
        "eu-central-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "il-central-1",
        "me-central-1",
        "me-south-1",
        "mx-central-1",
        "sa-east-1",
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
    }
)


def unsupported_region_message(region: str) -> str:
    """Why `region` is refused, and what to do, in one sentence a person can act on."""
    return (
        f"the Powertools Lambda layer is not published in {region!r}: its public SSM parameter "
        "/aws/service/powertools/python/... does not exist there, so the deploy would fail at change-set "
        f"time; use one of {', '.join(sorted(POWERTOOLS_LAYER_REGIONS))} (see stack/regions.py)"
    )
