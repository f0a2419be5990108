"""Automation rules and member tiers (issue 5): browse-no-order coupons, the first-order member guide, come-back
gifts for silent users, and follow → member tier (+ member-card update). See docs/rules.md.

Entry points: :func:`run_on_batch` (the events consumer, after folding a batch) and :func:`run_scheduled`
(EventBridge Scheduler inputs ``{"kind": "rules_due"}`` and ``{"kind": "silence_scan"}``).
"""

from __future__ import annotations

from lifelink.rules.config import RulesConfig, rules_config
from lifelink.rules.engine import AppDirectory, AppRules, RuleEngine
from lifelink.rules.runner import (
    BatchOutcome,
    OutboundPublisher,
    RuleDeps,
    batch_hook,
    run_on_batch,
    run_scheduled,
)

__all__ = [
    "AppDirectory", "AppRules", "BatchOutcome", "OutboundPublisher", "RuleDeps", "RuleEngine", "RulesConfig",
    "batch_hook", "rules_config", "run_on_batch", "run_scheduled",
]
