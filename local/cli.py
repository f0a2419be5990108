"""The `lifelink` command: operate a deployment (AWS) or the local stack (``--local``).

    lifelink [--local] apps add --app-id ID --kind life|mini --alipay-public-key KEY --app-private-key KEY
                                [--life-account LIFE_APP_ID] [--app-auth-token TOKEN] [--seller-id PID]
    lifelink [--local] apps list
    lifelink [--local] apps configure --app-id ID [--policy JSON|FILE] [--welcome JSON|FILE|none]
                                      [--gateway-url URL|none]
    lifelink [--local] dlq show|redrive QUEUE [--max N]       (QUEUE: events)

KEY is a file path or the key text, in any Alipay format (one-line base64 PKCS#8/PKCS#1, or PEM).
Against AWS, the state table comes from --state-table, $LIFELINK_STATE_TABLE, or the stack's outputs
(--stack, default "lifelink").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from lifelink.alipay.errors import KeyFormatError, KeyMismatchError
from lifelink.alipay.keys import AppKeys
from lifelink.store.apps import DEFAULT_SECRET_PREFIX, AppRecord, AppRegistry
from lifelink_local import localconf


class CliError(Exception):
    pass


def read_key(value: str) -> str:
    """A key given as a file path or as the key text itself."""
    candidate = Path(value).expanduser()
    if len(value) < 4096 and "\n" not in value and candidate.is_file():
        return candidate.read_text().strip()
    return value.strip()


def _state_table(args: argparse.Namespace) -> tuple[str, str]:
    if args.local:
        conf = localconf.load()
        localconf.apply_aws_env(conf)
        return conf["state_table"], conf.get("app_secret_prefix", DEFAULT_SECRET_PREFIX)
    prefix = os.environ.get("LIFELINK_APP_SECRET_PREFIX", DEFAULT_SECRET_PREFIX)
    table = args.state_table or os.environ.get("LIFELINK_STATE_TABLE")
    if table:
        return table, prefix
    import boto3

    try:
        stacks = boto3.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"]
    except Exception as exc:
        raise CliError(f"cannot read stack {args.stack!r} ({exc}); pass --state-table or --local") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    for key, value in outputs.items():
        if key.startswith("StateTable"):
            return value, prefix
    raise CliError(f"stack {args.stack!r} has no StateTable output; pass --state-table")


def registry(args: argparse.Namespace) -> tuple[AppRegistry, str]:
    import boto3

    table, prefix = _state_table(args)
    return AppRegistry(boto3.client("dynamodb"), table, boto3.client("secretsmanager")), prefix


def apps_add(args: argparse.Namespace) -> dict[str, Any]:
    private_text = read_key(args.app_private_key)
    alipay_text = read_key(args.alipay_public_key)
    try:
        keys = AppKeys.from_texts(private_text, alipay_text)
    except KeyMismatchError as exc:
        raise CliError(str(exc)) from exc
    except KeyFormatError as exc:
        raise CliError(f"cannot read a key: {exc}") from exc
    reg, prefix = registry(args)
    secret = {
        "app_private_key": private_text,
        "alipay_public_key": alipay_text,
        "app_auth_token": args.app_auth_token or "",
    }
    record = AppRecord(
        app_id=args.app_id,
        kind=args.kind,
        secret_name=f"{prefix}{args.app_id}",
        life_account=args.life_account,
        seller_id=args.seller_id,
        third_party=bool(args.app_auth_token),
    )
    try:
        stored = reg.register(record, secret)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    return {**stored.model_dump(exclude_none=True), "app_public_key": keys.app_public_key_one_line}


def _json_arg(value: str, what: str) -> dict[str, Any] | None:
    if value.strip().lower() == "none":
        return None
    text = read_key(value)  # a file path or the text itself
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not JSON (nor a file holding JSON): {exc}") from exc
    if not isinstance(data, dict):
        raise CliError(f"{what} must be a JSON object")
    return data


def apps_configure(args: argparse.Namespace) -> dict[str, Any]:
    from pydantic import ValidationError

    from lifelink.domain.messages import LifeTemplateContent
    from lifelink.domain.policy import MessagePolicy

    changes: dict[str, Any] = {}
    try:
        if args.policy is not None:
            policy = _json_arg(args.policy, "--policy")
            changes["policy"] = MessagePolicy.parse(policy).model_dump(mode="json") if policy else None
        if args.welcome is not None:
            welcome = _json_arg(args.welcome, "--welcome")
            if welcome is not None:
                LifeTemplateContent.model_validate({**welcome, "type": "life_template"})
            changes["welcome"] = welcome
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise CliError(f"invalid settings: {problems}") from exc
    if args.gateway_url is not None:
        changes["gateway_url"] = None if args.gateway_url.lower() == "none" else args.gateway_url
    if not changes:
        raise CliError("nothing to configure: give --policy, --welcome or --gateway-url")
    reg, _ = registry(args)
    try:
        return reg.configure(args.app_id, **changes).model_dump(exclude_none=True)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def apps_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    reg, _ = registry(args)
    return [r.model_dump(exclude_none=True) for r in reg.list()]


def _queue_pair(args: argparse.Namespace) -> Any:
    import boto3

    from lifelink_local.dlq import QueuePair

    name = args.queue
    if args.local:
        conf = localconf.load()
        localconf.apply_aws_env(conf)
        queues = conf.get("queues", {})
        if name not in queues:
            raise CliError(f"unknown queue {name!r}; known: {', '.join(sorted(queues))}")
        return boto3.client("sqs"), QueuePair(name, queues[name]["url"], queues[name]["dlq_url"])
    title = name.capitalize()
    try:
        stacks = boto3.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"]
    except Exception as exc:
        raise CliError(f"cannot read stack {args.stack!r} ({exc})") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    try:
        return boto3.client("sqs"), QueuePair(name, outputs[f"{title}QueueUrl"], outputs[f"{title}DLQUrl"])
    except KeyError:
        raise CliError(f"stack {args.stack!r} has no queue {name!r}") from None


def dlq_show(args: argparse.Namespace) -> dict[str, Any]:
    from lifelink_local.dlq import show

    sqs, pair = _queue_pair(args)
    return show(sqs, pair)


def dlq_redrive(args: argparse.Namespace) -> dict[str, Any]:
    from lifelink_local.dlq import redrive

    sqs, pair = _queue_pair(args)
    result = redrive(sqs, pair, args.max)
    if "error" in result:
        raise CliError(f"moved {result['moved']} message(s), then: {result['error']}")
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lifelink", description="Operate lifelink (AWS, or the local stack).")
    p.add_argument("--local", action="store_true", help="use the local stack (.lifelink/local.json)")
    p.add_argument("--stack", default=os.environ.get("LIFELINK_STACK", "lifelink"), help="CloudFormation stack")
    p.add_argument("--state-table", help="state table name (overrides the stack's output)")
    p.add_argument("--json", action="store_true", help="print JSON")
    sub = p.add_subparsers(dest="group", required=True)
    apps = sub.add_parser("apps", help="the app registry").add_subparsers(dest="command", required=True)
    add = apps.add_parser("add", help="register an app (keys go to Secrets Manager)")
    add.add_argument("--app-id", required=True)
    add.add_argument("--kind", required=True, choices=["life", "mini"])
    add.add_argument("--alipay-public-key", required=True, help="Alipay's public key: file path or text")
    add.add_argument("--app-private-key", required=True, help="the app private key: file path or text")
    add.add_argument("--life-account", help="mini programs: the life account it is bound to")
    add.add_argument("--app-auth-token", help="third-party mode: the merchant's app_auth_token")
    add.add_argument("--seller-id", help="trade notifications must name this seller (2088… PID)")
    add.set_defaults(run=apps_add)
    conf = apps.add_parser("configure", help="message policy, welcome message, gateway URL of an app")
    conf.add_argument("--app-id", required=True)
    conf.add_argument("--policy", help="MessagePolicy as JSON or a JSON file (caps, quiet hours, rate); none resets")
    conf.add_argument("--welcome", help="the template message new followers get, as JSON or a file; none removes")
    conf.add_argument("--gateway-url", help="per-app Alipay gateway (e.g. the sandbox); none removes")
    conf.set_defaults(run=apps_configure)
    ls = apps.add_parser("list", help="list registered apps and bindings")
    ls.set_defaults(run=apps_list)
    dlq = sub.add_parser("dlq", help="dead-letter queues").add_subparsers(dest="command", required=True)
    for verb, fn, text in (("show", dlq_show, "depth and sample messages"),
                           ("redrive", dlq_redrive, "move messages back to the source queue")):
        cmd = dlq.add_parser(verb, help=text)
        cmd.add_argument("queue", help="the queue's name, e.g. events")
        if verb == "redrive":
            cmd.add_argument("--max", type=int, default=None, help="move at most N messages")
        cmd.set_defaults(run=fn)
    return p


def _print(result: Any, as_json: bool) -> None:
    if as_json or isinstance(result, dict):
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    if not result:
        print("no apps registered")
        return
    for r in result:
        bound = f"  bound to {r['life_account']}" if r.get("life_account") else ""
        print(f"{r['app_id']:<20} {r['kind']:<5}{bound}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _print(args.run(args), args.json)
    except (CliError, FileNotFoundError) as exc:
        print(f"lifelink: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
