"""The `lifelink` command: operate a deployment (AWS) or the local stack (``--local``).

    lifelink [--local] apps add --app-id ID --kind life|mini --alipay-public-key KEY --app-private-key KEY
                                [--life-account LIFE_APP_ID] [--app-auth-token TOKEN] [--seller-id PID]
                                [--app-cert CRT --alipay-cert CRT --alipay-root-cert CRT]  (certificate mode)
    lifelink [--local] apps list
    lifelink [--local] apps configure --app-id ID [--policy JSON|FILE] [--welcome JSON|FILE|none]
                                      [--gateway-url URL|none] [--template ID ...|--template none]
    lifelink [--local] followers import --app LIFE_APP_ID FILE [--as-of ISO]   (CSV or JSON list of user ids)
    lifelink [--local] dlq show|redrive QUEUE [--max N]       (QUEUE: events)
    lifelink [--local] [--api-url URL] campaign apply -f FILE     (YAML or JSON; - reads stdin)
    lifelink [--local] [--api-url URL] campaign list | status ID | preview ID [--phase P]
    lifelink [--local] [--api-url URL] campaign pause ID | resume ID | cancel ID
    lifelink [--local] [--api-url URL] report [--app APP] [--from DAY] [--to DAY] [--out FILE]
    lifelink demo [--users N] [--speed X] [--seed S]   (the playbook demo on a local stack of its own)

KEY is a file path or the key text, in any Alipay format (one-line base64 PKCS#8/PKCS#1, or PEM).
Against AWS, the state table comes from --state-table, $LIFELINK_STATE_TABLE, or the stack's outputs
(--stack, default "lifelink"). Campaign commands call the internal API (SigV4-signed): its URL comes from
--api-url, $LIFELINK_API_URL, the local stack (--local) or the stack's ApiUrl output.

Output is human-readable; --json prints JSON. Exit codes: 0 done, 1 refused or invalid (every problem is
printed, one per line, with where it is), 2 usage or configuration (bad arguments, unreadable file, no API).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from lifelink.alipay.errors import KeyFormatError, KeyMismatchError
from lifelink.alipay.keys import AppKeys
from lifelink.store.apps import DEFAULT_SECRET_PREFIX, AppRecord, AppRegistry
from lifelink_local import localconf
from lifelink_local.api_client import ApiAnswer, ApiClient, ApiUnavailable, client_for, path_part
from lifelink_local.playbook import command as demo_command

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A usage or configuration problem (exit 2)."""


class Refused(Exception):
    """The request was refused or the input is invalid (exit 1): every problem, one line each."""

    def __init__(self, headline: str, problems: list[str], body: Any = None) -> None:
        super().__init__(headline)
        self.headline = headline
        self.problems = problems
        self.body = body


@dataclass(frozen=True)
class Rendered:
    """A command's result: ``data`` for --json, ``text`` for people."""

    data: Any
    text: str


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
    from lifelink.alipay.openapi import OpenApiConfig

    certs = {k: read_key(v) for k, v in (("app_cert", args.app_cert), ("alipay_cert", args.alipay_cert),
                                         ("alipay_root_cert", args.alipay_root_cert)) if v}
    if not args.alipay_public_key and not certs.get("alipay_cert"):
        raise CliError("give --alipay-public-key (public-key mode) or the three certificates (certificate mode)")
    private_text = read_key(args.app_private_key)
    alipay_text = read_key(args.alipay_public_key) if args.alipay_public_key else certs["alipay_cert"]
    secret = {"app_private_key": private_text, "alipay_public_key": alipay_text,
              "app_auth_token": args.app_auth_token or "", **certs}
    try:
        keys = AppKeys.from_texts(private_text, alipay_text)
        mode = "cert" if certs else "key"
        config = OpenApiConfig.from_secret(args.app_id, secret, "https://unused.invalid", mode=mode)
        if certs and config.alipay_public_key.public_numbers() != keys.alipay_public_key.public_numbers():
            raise KeyMismatchError("--alipay-public-key and --alipay-cert hold different keys")
    except KeyMismatchError as exc:
        raise CliError(str(exc)) from exc
    except KeyFormatError as exc:
        raise CliError(f"cannot read a key: {exc}") from exc
    reg, prefix = registry(args)
    record = AppRecord(
        app_id=args.app_id,
        kind=args.kind,
        secret_name=f"{prefix}{args.app_id}",
        life_account=args.life_account,
        seller_id=args.seller_id,
        third_party=bool(args.app_auth_token),
        mode=mode,
    )
    try:
        stored = reg.register(record, secret)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    sns = {"app_cert_sn": config.app_cert_sn, "alipay_root_cert_sn": config.alipay_root_cert_sn} if certs else {}
    return {**stored.model_dump(exclude_none=True), "app_public_key": keys.app_public_key_one_line, **sns}


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


def _policy_document(policy: dict[str, Any]) -> dict[str, Any]:
    """The app's policy document: the message policy (validated, defaults filled in) beside the other sections,
    each validated by its own model and kept as given (tag thresholds, automation rules and member tiers)."""
    from lifelink.domain.policy import OTHER_SECTIONS, MessagePolicy
    from lifelink.domain.tags import TagPolicy
    from lifelink.rules import rules_config

    others = {k: v for k, v in policy.items() if k in OTHER_SECTIONS}
    if "tags" in others:
        TagPolicy.model_validate(others["tags"])
    if "rules" in others:
        rules_config(policy)
    return {**MessagePolicy.parse(policy).model_dump(mode="json"), **others}


def apps_configure(args: argparse.Namespace) -> dict[str, Any]:
    from pydantic import ValidationError

    from lifelink.domain.messages import LifeTemplateContent

    changes: dict[str, Any] = {}
    try:
        if args.policy is not None:
            policy = _json_arg(args.policy, "--policy")
            changes["policy"] = _policy_document(policy) if policy else None
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
    if args.templates is not None:
        changes["templates"] = _templates(args.templates)
    if not changes:
        raise CliError("nothing to configure: give --policy, --welcome, --gateway-url or --template")
    reg, _ = registry(args)
    try:
        return reg.configure(args.app_id, **changes).model_dump(exclude_none=True)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _templates(values: list[str]) -> list[str] | None:
    """``--template`` values: the app's template ids (campaigns naming another are refused); ``none`` clears."""
    if [v.strip().lower() for v in values] == ["none"]:
        return None
    bad = [v for v in values if not TEMPLATE_ID.match(v)]
    if bad:
        raise CliError(f"not a template id: {', '.join(bad)} (letters, digits, _ and -; or none to clear)")
    return list(dict.fromkeys(values))


def apps_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    reg, _ = registry(args)
    return [r.model_dump(exclude_none=True) for r in reg.list()]


def followers_import(args: argparse.Namespace) -> dict[str, Any]:
    """Followers from before the deployment (a CSV or JSON list of user ids) into the audience store."""
    from lifelink.store.audience import Audience
    from lifelink_local.followers_import import file_time, import_followers, parse_user_list

    path = Path(args.file).expanduser()
    try:
        parsed = parse_user_list(path.read_text(encoding="utf-8-sig"))
        as_of = datetime.fromisoformat(args.as_of) if args.as_of else file_time(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: {exc}") from exc
    if as_of.tzinfo is None:
        raise CliError("--as-of must carry a timezone (e.g. 2025-01-01T08:00:00+08:00)")
    reg, _ = registry(args)
    app = reg.get(args.app)
    if app is None or app.kind != "life":
        raise CliError(f"{args.app} is not a registered life account (followers belong to life accounts)")
    import boto3

    table, _ = _state_table(args)
    return import_followers(Audience(boto3.client("dynamodb"), table), app.app_id, parsed, as_of).as_dict()


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
    from lifelink_local.dlq import describe_outbound, show

    sqs, pair = _queue_pair(args)
    describe = None
    if pair.name == "outbound":
        import boto3

        from lifelink.store.ledger import Ledger

        table, _ = _state_table(args)
        describe = describe_outbound(Ledger(boto3.client("dynamodb"), table).get)
    return show(sqs, pair, describe=describe)


def dlq_redrive(args: argparse.Namespace) -> dict[str, Any]:
    from lifelink_local.dlq import redrive

    sqs, pair = _queue_pair(args)
    result = redrive(sqs, pair, args.max)
    if "error" in result:
        raise CliError(f"moved {result['moved']} message(s), then: {result['error']}")
    return result


# ---- campaigns (through the internal API) ----------------------------------------------------------------


def _api(args: argparse.Namespace) -> ApiClient:
    return client_for(
        api_url=args.api_url, local=args.local, stack=args.stack, transport=getattr(args, "transport", None)
    )


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None, params: dict[str, str] | None = None,
          what: str = "") -> ApiAnswer:
    with _api(args) as api:
        answer = api.request(method, path, body, params)
    if answer.ok:
        return answer
    problems = [format_error(e) for e in answer.errors()]
    if answer.status == 422:
        headline = f"{what or 'the request'} is invalid ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"
    elif answer.status >= 500:
        headline = f"the API failed (HTTP {answer.status}):"
    else:
        headline = {404: "not found:", 409: "refused:"}.get(answer.status, f"refused (HTTP {answer.status}):")
    raise Refused(headline, problems, answer.body)


def format_loc(loc: list[Any]) -> str:
    """``["body", "phases", "preheat", "actions", 0, "at"]`` → ``phases.preheat.actions[0].at`` (the file's terms:
    ``body`` and ``path`` are the API's, not the user's)."""
    parts = list(loc)
    if parts and parts[0] in ("body", "path"):
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def format_error(error: dict[str, Any]) -> str:
    where = format_loc(list(error.get("loc") or []))
    msg = str(error.get("msg", ""))
    return f"{where}: {msg}" if where else msg


def _plain_json(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()  # naive stays naive: wall-clock time in the campaign's time zone
    raise TypeError(f"cannot represent {type(value).__name__} in JSON")


def read_definition(name: str) -> dict[str, Any]:
    """A campaign definition from a YAML or JSON file (``-``: stdin), as the JSON object the API takes."""
    if name == "-":
        text, label = sys.stdin.read(), "stdin"
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise CliError(f"no such file: {name}")
        text, label = path.read_text(encoding="utf-8"), name
    if name.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Refused(f"{label} is not valid JSON:", [f"line {exc.lineno} column {exc.colno}: {exc.msg}"]) from None
    else:
        import yaml  # JSON is YAML too

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise Refused(f"{label} is not valid YAML:", [f"{where}{problem}"]) from None
    if not isinstance(data, dict):
        raise Refused(f"{label} is not a campaign definition:", ["the file must hold one mapping (id, name, phases…)"])
    return json.loads(json.dumps(data, default=_plain_json, ensure_ascii=False))


def _campaign_path(campaign_id: str, *rest: str) -> str:
    return "/".join(["/campaigns", path_part(campaign_id), *rest])


def _when(iso: str | None) -> str:
    """``2026-06-01T10:00:00+08:00`` → ``2026-06-01 10:00 +08:00`` (the campaign's own offset)."""
    if not iso:
        return "-"
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    offset = at.strftime("%z")
    return at.strftime("%Y-%m-%d %H:%M") + (f" {offset[:3]}:{offset[3:]}" if offset else "")


def _next(boundary: dict[str, Any] | None) -> str:
    return f"{boundary['name']} at {_when(boundary['at'])}" if boundary else "none"


def campaign_apply(args: argparse.Namespace) -> Rendered:
    definition = read_definition(args.file)
    label = "-" if args.file == "-" else Path(args.file).name
    answer = _call(args, "POST", "/campaigns", definition, what=f"campaign definition {label}")
    data = answer.body
    if data["result"] == "unchanged":
        text = f"{data['id']}: unchanged (state {data['state']}); nothing written"
    else:
        lines = [f"{data['id']}: {data['result']} (state {data['state']})"]
        if data.get("schedules"):
            lines.append(f"  schedules: {', '.join(data['schedules'])}")
        lines.append(f"  next: {_next(data.get('next_boundary'))}")
        text = "\n".join(lines)
    return Rendered(data, text)


def campaign_list(args: argparse.Namespace) -> Rendered:
    data = _call(args, "GET", "/campaigns").body
    rows = data.get("campaigns", [])
    if not rows:
        return Rendered(data, "no campaigns")
    width = max(len(r["id"]) for r in rows)
    lines = [
        f"{r['id']:<{width}}  {r['state']:<9}  {_when(r['starts_at'])} → {_when(r['ends_at'])}  {r['name']}"
        for r in rows
    ]
    return Rendered(data, "\n".join(lines))


def _counts(counts: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items())) if counts else ""


def campaign_status(args: argparse.Namespace) -> Rendered:
    data = _call(args, "GET", _campaign_path(args.campaign_id)).body
    state = data["state"] + (f" (from {data['paused_from']})" if data.get("paused_from") else "")
    lines = [
        f"{data['id']}  {data['name']}",
        f"  state: {state}",
        f"  life account {data['life_account']}; mini programs {', '.join(data['mini_programs'])}; "
        f"time zone {data['timezone']}",
        "  phases:",
    ]
    for w in data.get("phases", []):
        lines.append(f"    {w['phase']:<8} {_when(w['start'])} → {_when(w['end'])}  {w['status']}")
    lines.append(f"  next boundary: {_next(data.get('next_boundary'))}")
    actions = data.get("actions", [])
    if actions:
        lines.append("  actions:")
        width = max(len(f"{a['phase']}.{a['id']}") for a in actions)
        for a in actions:
            done = {"fired": "fired", "firing": "firing"}.get(a["status"], f"due {_when(a['fire_at'])}")
            counts = _counts(a.get("counts") or {})
            if a.get("draw"):
                d = a["draw"]
                counts += f"  draw: {d['winners']} of {d['eligible_count']}, seed {d['seed']}"
            lines.append(f"    {a['phase'] + '.' + a['id']:<{width}}  {a['type']:<13} {done}  {counts}".rstrip())
    return Rendered(data, "\n".join(lines))


def _tree(value: Any, indent: int = 0) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                out.append(f"{pad}{k}:")
                out.extend(_tree(v, indent + 1))
            else:
                out.append(f"{pad}{k}: {_scalar(v)}")
        return out
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, dict | list) and item:
                sub = _tree(item, indent + 1)
                out.append(f"{pad}- {sub[0].strip()}")
                out.extend(sub[1:])
            else:
                out.append(f"{pad}- {_scalar(item)}")
        return out
    return [f"{pad}{_scalar(value)}"]


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return "none"
    return str(value)


def _reasons(counts: dict[str, Any]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items())) if counts else "none"


def preview_text(data: dict[str, Any]) -> str:
    """The dry run for people: audience, one line per action, totals, coupons (anything else as a tree)."""
    head = f"{data['campaign_id']}: dry run of {data.get('phase') or 'every action not fired yet'}, " \
           f"state {data.get('state', '?')} (nothing sent or written)"
    actions = data.get("actions")
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        rest = {k: v for k, v in data.items() if k not in ("campaign_id", "phase", "as_of")}
        return "\n".join([head, *_tree(rest, 1)])
    lines = [head]
    aud = data.get("audience") or {}
    if aud:
        share = aud.get("holdout_share") or 0
        where = f", expression {aud['expression']}" if aud.get("expression") else ", all followers"
        lines.append(f"  audience: {aud.get('size', '?')} (holdout {aud.get('holdout', 0)} at {share:.0%}){where}")
    width = max([len(str(a.get("action", ""))) for a in actions] + [6])
    lines.append(f"  {'action':<{width}}  {'type':<13} {'fires at':<23} {'send':>5} {'held':>5} {'capped':>6} "
                 f"{'skipped':>7}")
    for a in actions:
        flag = " (fired)" if a.get("already_fired") else ""
        lines.append(
            f"  {a.get('action', ''):<{width}}  {a.get('type', ''):<13} {_when(a.get('fires_at')):<23} "
            f"{a.get('would_send', 0):>5} {sum((a.get('held') or {}).values()):>5} "
            f"{sum((a.get('capped') or {}).values()):>6} {sum((a.get('skipped') or {}).values()):>7}{flag}"
        )
        if a.get("note"):
            lines.append(f"  {'':<{width}}  {a['note']}")
    totals = data.get("totals") or {}
    if totals:
        messages = ", ".join(f"{ch} {n}" for ch, n in sorted((totals.get("messages") or {}).items())) or "none"
        lines.append(f"  messages: {messages}")
        for bucket in ("held", "capped", "skipped"):
            if totals.get(bucket):
                lines.append(f"  {bucket}: {_reasons(totals[bucket])}")
    for coupon, use in sorted((data.get("coupons") or {}).items()):
        lines.append(f"  coupon {coupon}: up to {use.get('up_to', '?')} of stock {use.get('stock', '?')}")
    return "\n".join(lines)


def campaign_preview(args: argparse.Namespace) -> Rendered:
    params = {"phase": args.phase} if args.phase else None
    data = _call(args, "GET", _campaign_path(args.campaign_id, "preview"), params=params).body
    return Rendered(data, preview_text(data))


def _transition(verb: str) -> Any:
    def run(args: argparse.Namespace) -> Rendered:
        data = _call(args, "POST", _campaign_path(args.campaign_id, verb)).body
        text = f"{data['id']}: {data['state']} (was {data['previous_state']})"
        if data.get("schedules_removed"):
            text += "; its schedules are deleted"
        return Rendered(data, text)

    run.__name__ = f"campaign_{verb}"
    return run


campaign_pause = _transition("pause")
campaign_resume = _transition("resume")
campaign_cancel = _transition("cancel")


def _campaign_parser(sub: Any) -> None:
    def command(name: str, text: str, run: Any) -> argparse.ArgumentParser:
        cmd = camp.add_parser(name, help=text)
        cmd.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
        cmd.set_defaults(run=run)
        return cmd

    camp = sub.add_parser("campaign", help="campaigns (through the internal API)").add_subparsers(
        dest="command", required=True
    )
    apply = command("apply", "validate, store and schedule a campaign definition", campaign_apply)
    apply.add_argument("-f", "--file", required=True, help="the definition, YAML or JSON (- reads stdin)")
    command("list", "every campaign and its state", campaign_list)
    status = command("status", "state, phase windows, next boundary, counts per action", campaign_status)
    status.add_argument("campaign_id", metavar="ID")
    preview = command("preview", "dry run: what the actions would do (sends and writes nothing)", campaign_preview)
    preview.add_argument("campaign_id", metavar="ID")
    preview.add_argument("--phase", choices=["preheat", "burst", "settle"], help="one phase (default: every phase)")
    for verb, run, text in (
        ("pause", campaign_pause, "pause a scheduled or running campaign"),
        ("resume", campaign_resume, "resume a paused campaign (catches up in order)"),
        ("cancel", campaign_cancel, "cancel a campaign and delete its schedules"),
    ):
        command(verb, text, run).add_argument("campaign_id", metavar="ID")


# ---- report (through the metrics API) ----------------------------------------------------------------------


def _day_arg(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CliError(f"{name} must be a day (YYYY-MM-DD), not {value!r}") from None


def report(args: argparse.Namespace) -> Rendered:
    """Writes the HTML report; default file: .lifelink/report.html with --local, else ./report.html."""
    from lifelink_local.report import DEFAULT_NAME, ReportError, write_report

    first, last = _day_arg(args.first, "--from"), _day_arg(args.last, "--to")
    if first and last and last < first:
        raise CliError("--to must be on or after --from")
    app = args.app
    if app is None and args.local:
        life = [a["app_id"] for a in localconf.load().get("apps", []) if a.get("kind") == "life"]
        app = life[0] if life else None
    out = Path(args.out) if args.out else (localconf.STATE_DIR / DEFAULT_NAME if args.local else Path(DEFAULT_NAME))
    with _api(args) as api:
        try:
            path = write_report(api, out, app, first, last)
        except ReportError as exc:
            raise Refused("cannot make the report:", [str(exc)]) from None
    return Rendered({"path": str(path)}, str(path))


def _report_parser(sub: Any) -> None:
    cmd = sub.add_parser("report", help="write a self-contained HTML dashboard from the metrics API")
    cmd.add_argument("--app", help="app id (default: the local life account, or the first campaign's)")
    cmd.add_argument("--from", dest="first", metavar="DAY", help="first day, YYYY-MM-DD (default: 30 days ago)")
    cmd.add_argument("--to", dest="last", metavar="DAY", help="last day, inclusive (default: today)")
    cmd.add_argument("--out", help="the file to write (default: .lifelink/report.html with --local, else report.html)")
    cmd.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    cmd.set_defaults(run=report)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lifelink", description="Operate lifelink (AWS, or the local stack).")
    p.add_argument("--local", action="store_true", help="use the local stack (.lifelink/local.json)")
    p.add_argument("--stack", default=os.environ.get("LIFELINK_STACK", "lifelink"), help="CloudFormation stack")
    p.add_argument("--state-table", help="state table name (overrides the stack's output)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--api-url", help="the internal API's base URL (campaign commands; default $LIFELINK_API_URL)")
    sub = p.add_subparsers(dest="group", required=True)
    apps = sub.add_parser("apps", help="the app registry").add_subparsers(dest="command", required=True)
    add = apps.add_parser("add", help="register an app (keys go to Secrets Manager)")
    add.add_argument("--app-id", required=True)
    add.add_argument("--kind", required=True, choices=["life", "mini"])
    add.add_argument("--alipay-public-key", help="Alipay's public key: file path or text (or give --alipay-cert)")
    add.add_argument("--app-private-key", required=True, help="the app private key: file path or text")
    add.add_argument("--life-account", help="mini programs: the life account it is bound to")
    add.add_argument("--app-auth-token", help="third-party mode: the merchant's app_auth_token")
    add.add_argument("--seller-id", help="trade notifications must name this seller (2088… PID)")
    add.add_argument("--app-cert", help="certificate mode: appCertPublicKey_<app_id>.crt (file or PEM text)")
    add.add_argument("--alipay-cert", help="certificate mode: alipayCertPublicKey_RSA2.crt (file or PEM text)")
    add.add_argument("--alipay-root-cert", help="certificate mode: alipayRootCert.crt (file or PEM text)")
    add.set_defaults(run=apps_add)
    conf = apps.add_parser("configure", help="message policy, welcome message, gateway URL of an app")
    conf.add_argument("--app-id", required=True)
    conf.add_argument("--policy", help="MessagePolicy as JSON or a JSON file (caps, quiet hours, rate); none resets")
    conf.add_argument("--welcome", help="the template message new followers get, as JSON or a file; none removes")
    conf.add_argument("--gateway-url", help="per-app Alipay gateway (e.g. the sandbox); none removes")
    conf.add_argument("--template", action="append", dest="templates", metavar="ID",
                      help="a template id the app has at Alipay (repeat for each; replaces the list); none clears")
    conf.set_defaults(run=apps_configure)
    ls = apps.add_parser("list", help="list registered apps and bindings")
    ls.set_defaults(run=apps_list)
    fol = sub.add_parser("followers", help="followers of a life account").add_subparsers(dest="command", required=True)
    imp = fol.add_parser("import", help="record followers from before the deployment (idempotent)")
    imp.add_argument("--app", required=True, help="the life account's app id")
    imp.add_argument("file", help="CSV (first column) or JSON list of user ids / open ids")
    imp.add_argument("--as-of", help="when the list was taken, ISO 8601 with offset (default: the file's mtime)")
    imp.set_defaults(run=followers_import)
    dlq = sub.add_parser("dlq", help="dead-letter queues").add_subparsers(dest="command", required=True)
    for verb, fn, text in (("show", dlq_show, "depth and sample messages"),
                           ("redrive", dlq_redrive, "move messages back to the source queue")):
        cmd = dlq.add_parser(verb, help=text)
        cmd.add_argument("queue", help="the queue's name, e.g. events")
        if verb == "redrive":
            cmd.add_argument("--max", type=int, default=None, help="move at most N messages")
        cmd.set_defaults(run=fn)
    _campaign_parser(sub)
    _report_parser(sub)
    demo_command.register(sub)  # lifelink demo --users N --speed X: the playbook on a stack of its own
    return p


def _print(result: Any, as_json: bool) -> None:
    if isinstance(result, Rendered):
        print(json.dumps(result.data, indent=2, ensure_ascii=False) if as_json else result.text)
        return
    if as_json or isinstance(result, dict):
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    if not result:
        print("no apps registered")
        return
    for r in result:
        bound = f"  bound to {r['life_account']}" if r.get("life_account") else ""
        print(f"{r['app_id']:<20} {r['kind']:<5}{bound}")


def main(argv: list[str] | None = None, *, transport: Any = None) -> int:
    """Runs one command; ``transport`` (an httpx transport) replaces the network for campaign commands."""
    args = _parser().parse_args(argv)
    args.transport = transport
    try:
        _print(args.run(args), args.json)
    except Refused as exc:
        if args.json and exc.body is not None:
            print(json.dumps(exc.body, indent=2, ensure_ascii=False))
        print(f"lifelink: {exc.headline}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_REFUSED
    except (CliError, FileNotFoundError, ApiUnavailable) as exc:
        print(f"lifelink: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
