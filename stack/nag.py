"""cdk-nag acknowledgements and checkov skips: one helper each, so every exception reads the same and
sits next to the construct it concerns, with its reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, CfnResource, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge `rule_id` on `scope` and everything under it.

    Granular findings whose id holds more than one `::` (e.g. `AwsSolutions-IAM5[Resource::arn:...]`)
    are not accepted by `Validations.acknowledge`; cdk-nag reads the same metadata entry directly.
    """
    if rule_id.count("::") > 1:
        scope.node.add_metadata(Validations.ACKNOWLEDGED_RULES_METADATA_KEY, {rule_id: reason})
    else:
        Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def ref(construct: IConstruct, attribute: str = "") -> str:
    """How cdk-nag prints a reference to `construct` inside a finding id: `<LogicalId>` or
    `<LogicalId.Attr>`."""
    element = construct.node.default_child or construct
    assert isinstance(element, CfnElement)
    logical_id = Stack.of(construct).resolve(element.logical_id)
    return f"<{logical_id}.{attribute}>" if attribute else f"<{logical_id}>"


def skip_checkov(resource: IConstruct, check_id: str, comment: str) -> None:
    """Declare a checkov skip in the CloudFormation Metadata of `resource` (an L1, or an L2 whose default
    child is one), so the skip and its reason sit next to the construct they concern."""
    element = resource if isinstance(resource, CfnResource) else resource.node.default_child
    assert isinstance(element, CfnResource), f"{resource.node.path} has no CloudFormation resource"
    existing = element.get_metadata("checkov") or {}
    skips = [*existing.get("skip", []), {"id": check_id, "comment": comment}]
    element.add_metadata("checkov", {"skip": skips})
