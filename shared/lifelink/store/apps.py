"""The app registry: which Alipay apps this deployment serves, and where their keys live.

Items live in the state table (``pk = APP#<app_id>``, ``sk = APP``). Keys never touch DynamoDB: each
app has one Secrets Manager secret (``<APP_SECRET_PREFIX><app_id>``) holding JSON
``{"app_private_key", "alipay_public_key", "app_auth_token"?, "encrypt_key"?}``, plus in certificate mode
``"app_cert"``, ``"alipay_cert"`` and ``"alipay_root_cert"`` (PEM; ``mode = "cert"`` on the record).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

AppKind = Literal["life", "mini"]
DEFAULT_SECRET_PREFIX = "lifelink/apps/"  # noqa: S105 - a name prefix, not a secret


class AppRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    app_id: str
    kind: AppKind
    secret_name: str
    life_account: str | None = None  # mini programs: the life account they are bound to
    seller_id: str | None = None  # trade notifications must name this seller when set
    mode: Literal["key", "cert"] = "key"
    third_party: bool = False  # an app_auth_token acts for the merchant
    created_at: str | None = None
    # Message policy (lifelink.domain.policy.MessagePolicy as a JSON object; defaults when absent), stored as
    # JSON text in the item.
    policy: dict[str, Any] | None = None
    gateway_url: str | None = None  # per-app override of ALIPAY_GATEWAY_URL (e.g. the sandbox)
    # Life accounts: the template message each new follower gets (LifeTemplateContent fields), or none.
    welcome: dict[str, Any] | None = None
    # Template ids this app has at Alipay (stored as JSON text); when set, campaigns naming another are refused.
    templates: list[str] | None = None

    @field_validator("policy", "welcome", "templates", mode="before")
    @classmethod
    def _policy_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str | bytes) else value


def _key(app_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"APP#{app_id}"}, "sk": {"S": "APP"}}


def _to_item(record: AppRecord) -> dict[str, Any]:
    item: dict[str, Any] = _key(record.app_id)
    for name, value in record.model_dump(exclude_none=True).items():
        if isinstance(value, bool):
            item[name] = {"BOOL": value}
        elif isinstance(value, dict | list):
            item[name] = {"S": json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)}
        else:
            item[name] = {"S": str(value)}
    return item


def _from_item(item: Mapping[str, Any]) -> AppRecord:
    values = {k: next(iter(v.values())) for k, v in item.items() if k not in ("pk", "sk")}
    return AppRecord.model_validate(values)


# What registering an app sets; everything else on the item (policy with its rules, tags and tiers, welcome,
# templates, gateway_url, created_at) belongs to ``configure`` and survives registering the app again.
_REGISTERED_FIELDS = frozenset({"kind", "secret_name", "life_account", "mode", "third_party"})


def _reregistered(existing: AppRecord, given: AppRecord) -> AppRecord:
    """``given`` registered over ``existing``: the registration's fields from ``given``, the rest kept.

    ``seller_id`` and ``life_account`` change only when given (None keeps the stored value); a life
    account has no binding, so registering an app as ``life`` drops one.
    """
    update = {name: getattr(given, name) for name in _REGISTERED_FIELDS}
    if given.seller_id is not None:
        update["seller_id"] = given.seller_id
    if given.life_account is None:
        update["life_account"] = existing.life_account if given.kind == "mini" else None
    return existing.model_copy(update=update)


class AppRegistry:
    """Reads and writes app records; ``secrets`` is a Secrets Manager client (only writers need it)."""

    def __init__(self, dynamodb: Any, table: str, secrets: Any | None = None) -> None:
        self._ddb = dynamodb
        self._table = table
        self._secrets = secrets

    def get(self, app_id: str) -> AppRecord | None:
        if not app_id or len(app_id) > 64:
            return None
        got = self._ddb.get_item(TableName=self._table, Key=_key(app_id), ConsistentRead=False)
        item = got.get("Item")
        return _from_item(item) if item else None

    def list(self) -> list[AppRecord]:
        return sorted(self._scan(), key=lambda r: r.app_id)

    def _scan(self) -> Iterator[AppRecord]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :app AND begins_with(pk, :prefix)",
            "ExpressionAttributeValues": {":app": {"S": "APP"}, ":prefix": {"S": "APP#"}},
        }
        while True:
            page = self._ddb.scan(**kwargs)
            yield from (_from_item(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def register(
        self,
        record: AppRecord,
        secret: Mapping[str, str],
    ) -> AppRecord:
        """Store the secret first, then the record: a record never points at a missing secret.

        Registering an app that is already registered replaces its secret and the registration's own fields
        (kind, life-account binding, mode, third-party flag, seller id when given) and keeps its settings.
        """
        if self._secrets is None:
            raise RuntimeError("AppRegistry needs a Secrets Manager client to register apps")
        if record.life_account and record.kind != "mini":
            raise ValueError("only a mini program is bound to a life account")
        if record.life_account:
            bound = self.get(record.life_account)
            if bound is None or bound.kind != "life":
                raise ValueError(f"life account {record.life_account} is not registered (register it first)")
        body = json.dumps({k: v for k, v in secret.items() if v}, ensure_ascii=False)
        try:
            self._secrets.create_secret(Name=record.secret_name, SecretString=body)
        except self._secrets.exceptions.ResourceExistsException:
            self._secrets.put_secret_value(SecretId=record.secret_name, SecretString=body)
        existing = self.get(record.app_id)
        merged = _reregistered(existing, record) if existing is not None else record
        stamped = merged.model_copy(update={"created_at": merged.created_at or datetime.now(UTC).isoformat()})
        self._ddb.put_item(TableName=self._table, Item=_to_item(stamped))
        return stamped

    def configure(self, app_id: str, **changes: Any) -> AppRecord:
        """Change settings of a registered app (policy, welcome, gateway_url, seller_id, life_account, templates).

        A value of None removes the setting. Keys and the secret are not touched here.
        """
        allowed = {"policy", "welcome", "gateway_url", "seller_id", "life_account", "templates"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot configure {', '.join(sorted(unknown))}")
        record = self.get(app_id)
        if record is None:
            raise ValueError(f"app {app_id} is not registered")
        updated = AppRecord.model_validate({**record.model_dump(), **changes})
        self._ddb.put_item(TableName=self._table, Item=_to_item(updated))
        return updated

    def bindings(self) -> dict[str, list[str]]:
        """Life account id → the mini programs bound to it."""
        out: dict[str, list[str]] = {}
        records = self.list()
        for r in records:
            if r.kind == "life":
                out.setdefault(r.app_id, [])
        for r in records:
            if r.kind == "mini" and r.life_account:
                out.setdefault(r.life_account, []).append(r.app_id)
        return out
