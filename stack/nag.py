"""cdk-nag acknowledgements: one helper so every acknowledgement reads the same and sits next to the
construct it concerns, with its reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
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
    """How cdk-nag prints a reference to `construct` inside a finding id: `<LogicalId>` or `<LogicalId.Attr>`."""
    element = construct.node.default_child or construct
    assert isinstance(element, CfnElement)
    logical_id = Stack.of(construct).resolve(element.logical_id)
    return f"<{logical_id}.{attribute}>" if attribute else f"<{logical_id}>"
