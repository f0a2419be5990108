"""Once-only delivery on Powertools idempotency (DynamoDB, with a TTL past Alipay's ~25 h of retries).

``once(key, action)`` runs ``action`` the first time ``key`` is seen and records it as completed; a later
call with the same key returns without running it. If ``action`` raises, Powertools deletes the record,
so the sender's retry runs it again: nothing is lost. A delivery still in progress elsewhere raises
:class:`DeliveryInProgress` (answer "not yet" and let Alipay retry).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

DEFAULT_TTL_SECONDS = 48 * 3600  # Alipay retries for about 25 hours


class DeliveryInProgress(Exception):
    """The same delivery is being processed right now by another request."""


class Deduper:
    def __init__(
        self, table_name: str, *, dynamodb: Any | None = None, ttl_seconds: int = DEFAULT_TTL_SECONDS
    ) -> None:
        self._local = threading.local()
        self.config = IdempotencyConfig(
            event_key_jmespath="key",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=ttl_seconds,
            response_hook=self._replayed,
        )
        store = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=dynamodb)

        @idempotent_function(
            data_keyword_argument="delivery", persistence_store=store, config=self.config, key_prefix="delivery"
        )
        def run(delivery: dict[str, str]) -> dict[str, str]:
            return {"result": self._local.action()}

        self._run = run

    def _replayed(self, response: Any, record: Any) -> Any:
        self._local.replayed = True
        return response

    def once(self, key: str, action: Callable[[], str]) -> bool:
        """Run ``action`` unless ``key`` was done before. True when it ran now."""
        self._local.action = action
        self._local.replayed = False
        try:
            self._run(delivery={"key": key})
        except IdempotencyAlreadyInProgressError:
            raise DeliveryInProgress(key) from None
        return not self._local.replayed
