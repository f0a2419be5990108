"""The fault and load proof of issue 6: scenarios run against the real local stack, reconciled into a table.

``python -m lifelink_local.proof --scale reduced|full`` (``make proof`` runs the full scale); see docs/proof.md.
"""
