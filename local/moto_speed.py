"""Make moto's DynamoDB cheaper to run, without changing what it answers.

moto is the local stand-in for DynamoDB; the fault test and the local stack spend most of their CPU inside it,
mostly on ``UpdateItem``. Three of its costs are artefacts of how it is written, not of what DynamoDB does:

- **Parsing the same expression again.** An ``UpdateExpression`` is tokenised and parsed twice per request
  (once to validate the request, once to apply it), and every request of the same shape parses the same string.
  :func:`apply` keeps the parsed tree per expression string. Nothing mutates it: moto's validator works on a
  deep copy, and the request handler only reads it.
- **Checking the whole tree at every node.** ``ActionCountValidator`` (at most one SET, ADD and REMOVE
  clause) and ``OverlappingPathsValidator`` (no path updated twice) search the whole subtree below *every*
  expression node, which is quadratic in the number of actions. Checking once at the root finds the same
  violations (a subtree's actions are a subset of the root's), so each check runs once. (When a path is
  updated twice, the error may now name every duplicated path instead of the first found.)
- **Deep-copying the tree.** The validator works on a ``deepcopy`` of the parsed tree; for a cached tree a
  pickled copy is loaded instead, which builds the same objects several times faster.
- **Rebuilding the processor table per node.** Each tree walker rebuilds its ``{node type: function}`` map for
  every node it visits; it is built once per walker instead.

- **Serializing values member by member.** A response's item attributes are already in DynamoDB's JSON wire
  form; moto's generic serializer still walks each value through the ``AttributeValue`` shape, probing all ten
  members by several aliases. A value with no binary in it (``B``/``BS`` are base64-encoded by that walk) is
  written as it is, which is what the walk produces.

- **Copying whole tables for a transaction.** ``TransactWriteItems`` deep-copies every table it names (once per
  action) so that it can roll back, which costs time and memory proportional to the table: with a thousand
  users in the state table, those copies were 80 % of the local stack's DynamoDB CPU. The items the
  transaction names are copied instead and put back when it fails. This is exact because every backend
  operation holds the backend lock (:func:`lifelink_local.motoserver.atomic_backends`), so nothing else changes
  the table meanwhile, and a transaction writes only the items it names.

And two of SQS's. **Deleting a message** looked for its receipt handle in every message of the queue, building
each message's list of handles twice, so draining a deep queue was quadratic (the fault test's tens of thousands
of outcome events took minutes to drain). Each receipt handle now names its message (a weak map filled as
messages are received), and the message is taken out of the queue's list directly; a handle the map does not
know goes through moto's own search, so unknown handles fail as before.

**The clock.** Each ``SendMessage`` rebuilds every attribute of the queue, which counts its
visible, in-flight and delayed messages by asking each message whether it is visible, and each asks moto's
``unix_time_millis()``: a ``datetime`` subtraction. The current time in milliseconds comes from ``time.time()``
instead (the same epoch clock), several times cheaper. A send still costs time proportional to the queue's depth.

Every patch keeps moto's own errors: a malformed expression fails to parse (and is not cached), and two SET
clauses still raise ``TooManyClauses``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import pickle
import time
import types
import weakref
from typing import Any

_PARSE_CACHE_SIZE = 4096


_PLAIN_SCALARS = {"S": str, "N": str, "BOOL": bool, "NULL": bool}
_PLAIN_SETS = ("SS", "NS")


def _plain_attribute_value(value: Any) -> bool:
    """A DynamoDB AttributeValue already in its JSON wire form, with no binary (B, BS) anywhere: moto's serializer
    would produce an equal value member by member."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((kind, inner),) = value.items()
    if kind in _PLAIN_SCALARS:
        return isinstance(inner, _PLAIN_SCALARS[kind])
    if kind in _PLAIN_SETS:
        return isinstance(inner, list) and all(isinstance(v, str) for v in inner)
    if kind == "M":
        return isinstance(inner, dict) and all(_plain_attribute_value(v) for v in inner.values())
    if kind == "L":
        return isinstance(inner, list) and all(_plain_attribute_value(v) for v in inner)
    return False


def apply() -> list[tuple[Any, str, Any]]:
    """Patch moto in this process; returns (class, attribute, original) triples for the caller to restore."""
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node, UpdateExpression
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser
    from moto.dynamodb.parsing.validators import ActionCountValidator, OverlappingPathsValidator

    undo: list[tuple[Any, str, Any]] = []

    def patch(cls: Any, name: str, value: Any) -> None:
        undo.append((cls, name, cls.__dict__.get(name, getattr(cls, name))))
        setattr(cls, name, value)

    make = UpdateExpressionParser.__dict__["make"].__func__

    pickled: dict[int, bytes] = {}  # id(parsed tree) -> its pickle, for as long as the tree is cached

    @functools.lru_cache(maxsize=_PARSE_CACHE_SIZE)
    def parsed(cls: type, expression_str: str) -> Any:
        tree = make(cls, expression_str)
        if len(pickled) >= _PARSE_CACHE_SIZE:
            pickled.clear()  # ids of evicted trees could be reused; a miss only costs a deepcopy
        with contextlib.suppress(pickle.PicklingError, TypeError, AttributeError):  # else: the ordinary deepcopy
            pickled[id(tree)] = pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)
        return tree

    def tree_copy(obj: Any, memo: Any = None) -> Any:
        blob = pickled.get(id(obj)) if memo is None else None
        # our own pickle of a tree moto parsed in this process, never outside data
        return pickle.loads(blob) if blob is not None else copy.deepcopy(obj, memo)  # noqa: S301

    def cached_make(cls: type, expression_str: str) -> Any:
        return parsed(cls, expression_str)

    def counted_at_root(check: str) -> Any:
        def traverse(self: Any, node: Any) -> Any:
            if isinstance(node, UpdateExpression):
                getattr(self, check)(node)
            return node

        return traverse

    def processing_map(self: Any) -> dict[type, Any]:
        table = self.__dict__.get("_lifelink_map")
        if table is None:
            table = self.__dict__["_lifelink_map"] = type(self)._processing_map(self)
        return table

    def nodes_to_be_processed(self: Any) -> tuple[type, ...]:
        kinds = self.__dict__.get("_lifelink_kinds")
        if kinds is None:
            kinds = self.__dict__["_lifelink_kinds"] = tuple(processing_map(self))
        return kinds

    plain_pre = DepthFirstTraverser.__dict__["pre_processing_of_child"]

    def traverse_node_recursively(self: Any, node: Any, child_id: int = -1) -> Any:
        """moto's walk (children first, then the node; a processed node replaces itself in its parent), with the
        per-child hook skipped where a walker does not override it."""
        if not isinstance(node, Node):
            return node
        parent_node = node.parent
        children = node.children
        if children is not None:
            pre = None if type(self).pre_processing_of_child is plain_pre else self.pre_processing_of_child
            walk = self.traverse_node_recursively
            for i, child_node in enumerate(children):
                if pre is not None:
                    pre(node, i)
                walk(child_node, i)
        if isinstance(node, self.nodes_to_be_processed()):
            node = self.process(node)
            node.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = node
        return node

    def process(self: Any, node: Any) -> Any:
        for class_key, processor in processing_map(self).items():
            if isinstance(node, class_key):
                return processor(node)
        return None

    import moto.sqs.models as sqs_models
    from moto.core.serialize import BaseJSONSerializer

    structure = BaseJSONSerializer.__dict__["_serialize_type_structure"]

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue" and _plain_attribute_value(value):
            self._default_serialize(serialized, value, shape, key)
            return
        structure(self, serialized, value, shape, key)

    patch(BaseJSONSerializer, "_serialize_type_structure", serialize_structure)

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else float(plain_millis(dt))

    plain_millis = sqs_models.unix_time_millis
    patch(sqs_models, "unix_time_millis", unix_time_millis)
    _patch_transactions(patch)
    _patch_sqs_deletes(patch)
    patch(UpdateExpressionParser, "make", classmethod(cached_make))
    patch(validators, "deepcopy", tree_copy)  # the validator's private copy of the cached tree
    patch(ActionCountValidator, "traverse", counted_at_root("verify_action_counts"))
    patch(OverlappingPathsValidator, "traverse", counted_at_root("check_for_overlapping_paths"))
    patch(DepthFirstTraverser, "nodes_to_be_processed", nodes_to_be_processed)
    patch(DepthFirstTraverser, "process", process)
    patch(DepthFirstTraverser, "traverse_node_recursively", traverse_node_recursively)
    return undo


def _patch_transactions(patch: Any) -> None:
    """``TransactWriteItems`` rolls back the items it names instead of restoring deep copies of whole tables."""
    from moto.dynamodb import models as ddb_models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    def deepcopy(obj: Any, memo: Any = None) -> Any:
        # moto's "backup" of a table before a transaction: the table itself (its rollback then reassigns the
        # same object); the items are snapshotted below. Anything else is copied as before.
        return obj if isinstance(obj, Table) else copy.deepcopy(obj, memo)

    def snapshots(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any, Any]]:
        taken = []
        for entry in transact_items[:100]:
            if not isinstance(entry, dict) or len(entry) != 1:
                continue
            ((op_type, op),) = entry.items()
            table = backend.tables.get(op.get("TableName") or "") if isinstance(op, dict) else None
            if table is None:
                continue
            source = op.get("Item") if op_type == "Put" else op.get("Key")
            try:
                hash_key = DynamoType(source[table.hash_key_attr])
                range_key = DynamoType(source[table.range_key_attr]) if table.range_key_attr else None
            except (KeyError, TypeError):
                continue  # moto refuses the action before writing it
            if range_key is not None:
                current = table.items.get(hash_key, {}).get(range_key)
            else:
                current = table.items.get(hash_key)
            taken.append((table, hash_key, range_key, copy.deepcopy(current)))
        return taken

    def restore(taken: list[tuple[Any, Any, Any, Any]]) -> None:
        for table, hash_key, range_key, item in reversed(taken):
            if range_key is not None:
                if item is None:
                    table.items.get(hash_key, {}).pop(range_key, None)
                    if hash_key in table.items and not table.items[hash_key]:
                        del table.items[hash_key]
                else:
                    table.items[hash_key][range_key] = item
            elif item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item

    transact = ddb_models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        taken = snapshots(self, transact_items)
        try:
            transact(self, transact_items)
        except BaseException:
            restore(taken)
            raise

    patch(ddb_models, "copy", types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy))
    patch(ddb_models.DynamoDBBackend, "transact_write_items", transact_write_items)


def _patch_sqs_deletes(patch: Any) -> None:
    """``DeleteMessage`` finds the message by its receipt handle instead of searching every message's handles."""
    from moto.sqs.models import Message, Queue

    by_handle: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
    mark_received = Message.mark_received
    search_and_delete = Queue.delete_message

    def mark_received_indexed(self: Any, *args: Any, **kwargs: Any) -> None:
        mark_received(self, *args, **kwargs)
        if self.receipt_handle:
            by_handle[self.receipt_handle] = self

    def delete_message(self: Any, receipt_handle: str) -> None:
        message = by_handle.get(receipt_handle)
        if message is None or receipt_handle in self.deleted_messages:
            search_and_delete(self, receipt_handle)  # moto's own path: already deleted, or an unknown handle
            return
        try:
            at = self._messages.index(message)  # identity: Message has no __eq__
        except ValueError:
            search_and_delete(self, receipt_handle)  # a handle of another queue's message: moto's answer
            return
        self._messages = self._messages[:at] + self._messages[at + 1 :]
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)

    patch(Message, "mark_received", mark_received_indexed)
    patch(Queue, "delete_message", delete_message)
