"""The work queue between ingest and processor, the replay queue beside it, and their dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stack.config import EnvironmentConfig
from stack.nag import acknowledge


class WorkQueues(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            data_key_reuse=Duration.hours(1),
            enforce_ssl=True,
            retention_period=Duration.days(14),
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            self.dead_letters,
            "Serverless-SQSRedrivePolicy",
            "This is the dead-letter queue itself; its messages go back to the queue each came from with "
            "`rtp dlq redrive`.",
        )
        self.work = self._source_queue("WorkQueue", config, key)
        # `rtp replay` sends claim checks here, never to the work queue: the processor polls it through a
        # mapping of its own with `processing.replay_concurrency` pollers, so live traffic never queues
        # behind a replay. Same handling, same dead-letter queue (`rtp dlq` sees replays' failures too).
        self.replay = self._source_queue("ReplayQueue", config, key)

    def _source_queue(self, construct_id: str, config: EnvironmentConfig, key: kms.IKey) -> sqs.Queue:
        """A queue the processor polls: encrypted with the CMK, TLS only, redriving to the dead-letter
        queue after `max_receive_count` receives."""
        return sqs.Queue(
            self,
            construct_id,
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            data_key_reuse=Duration.hours(1),
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(config.queue_visibility_timeout_seconds),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=config.processing.max_receive_count, queue=self.dead_letters
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
