"""Aggregation: events folded into user profiles and sharded counters (issue 5). See aggregator.py."""
