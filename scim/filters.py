"""SCIM filters (RFC 7644 §3.4.2.2) compiled to SQL: never evaluated in Python over all rows.

scim2-models parses a filter into a tree and binds each attribute path to the model it names
(:class:`~scim2_models.AttributeBinding`); this visitor turns that tree into one peewee expression over the table of
the resource type. Attributes with a column (``id``, ``userName``, ``externalId``, ``displayName``, ``active``,
``meta.created`` ...) compare on it, so lookups use the indexes; ``members`` and ``groups`` compare through
``group_member`` rows; every other attribute is read from the ``resource`` JSON. The semantics follow scim2-models'
own evaluator (``ScimFilter.match``), which the property tests compare against: strings compare through the
comparison key (NFC, lower case unless caseExact), an attribute a resource lacks matches ``ne`` and nothing else,
and ``ne`` on a multi-valued attribute means no value equals the operand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import peewee
from peewee import SQL, fn
from scim2_models import Extension, InvalidFilterException
from scim2_models.path import (
    AttributeBinding,
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    FilterVisitor,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
    coerce_value,
)
from scim2_models.path.resolution import _resolve_filter_path, _validate_operator, _validate_value_selection

from syncd.store.dialect import Dialect
from syncd.store.dialect import of as dialect_of
from syncd.store.models import DirectoryGroup, GroupMember, Identity

TRUE = SQL("1 = 1")
FALSE = SQL("1 = 0")
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:user"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:group"


@dataclass(frozen=True)
class Column:
    """An attribute kept in a column; ``folded`` when the column holds the comparison key already."""

    node: peewee.Node
    folded: bool = False
    stored: Callable[[Any], Any] | None = None
    text: bool = True


def _naive_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


USER_COLUMNS: dict[str, Column] = {
    f"{CORE_USER}:id": Column(Identity.key),
    f"{CORE_USER}:externalid": Column(Identity.external_id),
    f"{CORE_USER}:username": Column(Identity.user_name_lower, folded=True),
    f"{CORE_USER}:displayname": Column(Identity.display_name),
    f"{CORE_USER}:name.givenname": Column(Identity.given_name),
    f"{CORE_USER}:name.familyname": Column(Identity.family_name),
    f"{CORE_USER}:title": Column(Identity.title),
    f"{CORE_USER}:meta.created": Column(Identity.created_at, stored=_naive_utc, text=False),
    f"{CORE_USER}:meta.lastmodified": Column(Identity.updated_at, stored=_naive_utc, text=False),
    f"{ENTERPRISE}:department": Column(Identity.department),
    f"{ENTERPRISE}:employeenumber": Column(Identity.employee_number),
    f"{ENTERPRISE}:manager.value": Column(Identity.manager_key),
}

GROUP_COLUMNS: dict[str, Column] = {
    f"{CORE_GROUP}:id": Column(DirectoryGroup.key),
    f"{CORE_GROUP}:externalid": Column(DirectoryGroup.external_id),
    f"{CORE_GROUP}:displayname": Column(DirectoryGroup.display_name_lower, folded=True),
    f"{CORE_GROUP}:meta.created": Column(DirectoryGroup.created_at, stored=_naive_utc, text=False),
    f"{CORE_GROUP}:meta.lastmodified": Column(DirectoryGroup.updated_at, stored=_naive_utc, text=False),
}


def json_keys(binding: AttributeBinding) -> list[str]:
    """The keys of an attribute in the stored resource JSON (the extension URN first for an extension)."""
    model = binding.model
    schema = str(model.__schema__)
    suffix = binding.urn[len(schema) + 1 :]
    keys = suffix.split(".")
    if isinstance(model, type) and issubclass(model, Extension):
        return [schema, *keys]
    return keys


class _Relation:
    """A multi-valued attribute kept as ``group_member`` rows: Group.members or User.groups."""

    def __init__(self, outer_is_group: bool, source_id: int) -> None:
        self.outer_is_group = outer_is_group
        self.source_id = source_id

    def sub_column(self, sub: str | None, member_alias: Any, group_alias: Any) -> tuple[peewee.Node, bool] | None:
        sub = (sub or "value").lower()
        if self.outer_is_group:
            if sub == "value":
                return member_alias.member_key, False
            if sub == "type":
                return member_alias.member_kind, False
            return None
        if sub == "value":
            return group_alias.key, False
        if sub == "display":
            return group_alias.display_name_lower, True
        return None

    def exists(self, build: Callable[[Any, Any], peewee.Node]) -> peewee.Node:
        member = GroupMember.alias("gm")
        if self.outer_is_group:
            query = member.select(SQL("1")).where((member.group == DirectoryGroup.id) & build(member, None))
        else:
            group = DirectoryGroup.alias("dg")
            query = (
                member.select(SQL("1"))
                .join(group, on=(member.group == group.id))
                .where((member.source == self.source_id) & (member.member_key == Identity.key) & build(member, group))
            )
        return fn.EXISTS(query)


class FilterCompiler(FilterVisitor[peewee.Node]):
    """Compile a filter bound to one resource model into a peewee expression over its table."""

    def __init__(self, model: type[Any], is_group: bool, source_id: int, dialect: Dialect | None = None) -> None:
        self.model = model
        self.is_group = is_group
        self.table = DirectoryGroup if is_group else Identity
        self.columns = GROUP_COLUMNS if is_group else USER_COLUMNS
        self.relation = _Relation(is_group, source_id)
        self.relation_urn = f"{CORE_GROUP}:members" if is_group else f"{CORE_USER}:groups"
        self.dialect = dialect or dialect_of()

    def compile(self, node: FilterNode) -> peewee.Node:
        return self.visit(node)

    # -- resolution ---------------------------------------------------------

    def _bind(self, attr_path: AttrPath, for_comparison: bool) -> AttributeBinding | None:
        return _resolve_filter_path(self.model, attr_path, strict=False, for_comparison=for_comparison)

    def _head_urn(self, binding: AttributeBinding) -> str:
        schema = str(binding.model.__schema__)
        head = binding.urn[len(schema) + 1 :].split(".", 1)[0]
        return f"{schema}:{head}".lower()

    # -- nodes --------------------------------------------------------------

    def visit_logical_expr(self, node: LogicalExpr) -> peewee.Node:
        return _join(node.op, [self.visit(term) for term in node.terms])

    def visit_not(self, node: Not) -> peewee.Node:
        return _negate(self.visit(node.expr))

    def visit_present(self, node: Present) -> peewee.Node:
        binding = self._bind(node.attr_path, for_comparison=False)
        if binding is None:
            return FALSE
        urn = binding.urn.lower()
        if self._head_urn(binding) == self.relation_urn:
            column = self.relation.sub_column(binding.sub_field_name, GroupMember, DirectoryGroup)
            if binding.sub_field_name is not None and column is None:
                return FALSE
            return self.relation.exists(lambda m, g: self._present_json(self._relation_column(binding, m, g)))
        if urn in self.columns:
            column = self.columns[urn]
            return self._present_json(column.node) if column.text else column.node.is_null(False)
        if urn.endswith(":meta.resourcetype"):
            return TRUE
        keys = json_keys(binding)
        if binding.is_multivalued:
            head = keys[: len(keys) - 1] if binding.sub_field_name else keys
            sub = keys[len(head) :]
            element = self.dialect.element_value(sub)
            return self.dialect.exists_element(self.table.resource, head, self._present_json(element))
        json_type = self.dialect.json_type(self.table.resource, keys)
        value = self.dialect.json_value(self.table.resource, keys)
        return json_type.is_null(False) & (value.is_null() | (value != "")) & self._non_empty_container(keys)

    def _relation_column(self, binding: AttributeBinding, member: Any, group: Any) -> peewee.Node:
        column = self.relation.sub_column(binding.sub_field_name, member, group)
        return column[0] if column else FALSE

    def _present_json(self, element: peewee.Node) -> peewee.Node:
        return element.is_null(False) & (element != "")

    def _non_empty_container(self, keys: list[str]) -> peewee.Node:
        json_type = self.dialect.json_type(self.table.resource, keys)
        value = self.dialect.json_value(self.table.resource, keys)
        return ~(json_type.in_(["object", "array"]) & value.in_(["{}", "[]"]))

    def visit_comparison(self, node: Comparison) -> peewee.Node:
        binding = self._bind(node.attr_path, for_comparison=True)
        if binding is None:
            return FALSE
        _validate_operator(binding, node.op)
        expected = coerce_value(binding, node.value, node.op)
        urn = binding.urn.lower()
        if self._head_urn(binding) == self.relation_urn:
            return self._compare_relation(binding, node.op, expected)
        if urn in self.columns:
            column = self.columns[urn]
            if column.stored and expected is not None and not isinstance(expected, datetime):
                raise InvalidFilterException(
                    detail=f"{node.attr_path} is a dateTime: compare it with eq, ne, gt, ge, lt or le and a "
                    'timestamp such as "2026-01-31T00:00:00Z" (RFC 7644 §3.4.2.2)'
                )
            operand = column.stored(expected) if column.stored and expected is not None else expected
            return self._compare(column.node, node.op, operand, binding, folded=column.folded)
        if urn.endswith(":meta.resourcetype"):
            name = "Group" if self.is_group else "User"
            return self._compare(peewee.Value(name), node.op, expected, binding)
        keys = json_keys(binding)
        if binding.is_multivalued:
            head = keys[: len(keys) - 1] if binding.sub_field_name else keys
            sub = keys[len(head) :]
            element = self.dialect.element_value(sub)
            if node.op == CompareOperator.ne:
                equal = self._compare(element, CompareOperator.eq, expected, binding, json=True)
                return ~self.dialect.exists_element(self.table.resource, head, equal)
            condition = self._compare(element, node.op, expected, binding, json=True)
            return self.dialect.exists_element(self.table.resource, head, condition)
        value = self.dialect.json_value(self.table.resource, keys)
        return self._compare(value, node.op, expected, binding, json=True)

    def _compare_relation(self, binding: AttributeBinding, op: CompareOperator, expected: Any) -> peewee.Node:
        probe = self.relation.sub_column(binding.sub_field_name, GroupMember, DirectoryGroup)
        if probe is None:
            return TRUE if op == CompareOperator.ne else FALSE

        def build(member: Any, group: Any, wanted: CompareOperator) -> peewee.Node:
            column, folded = self.relation.sub_column(binding.sub_field_name, member, group)  # type: ignore[misc]
            return self._compare(column, wanted, expected, binding, folded=folded)

        if op == CompareOperator.ne:
            return ~self.relation.exists(lambda m, g: build(m, g, CompareOperator.eq))
        return self.relation.exists(lambda m, g: build(m, g, op))

    def visit_value_path(self, node: ValuePath) -> peewee.Node:
        binding = self._bind(node.attr_path, for_comparison=False)
        if binding is None:
            return FALSE
        _validate_value_selection(binding)
        item_model = binding.field_type
        if self._head_urn(binding) == self.relation_urn:
            return self.relation.exists(
                lambda m, g: _ElementCompiler(self, item_model, binding, relation=(m, g)).visit(node.val_filter)
            )
        keys = json_keys(binding)
        condition = _ElementCompiler(self, item_model, binding).visit(node.val_filter)
        return self.dialect.exists_element(self.table.resource, keys, condition)

    # -- comparisons ---------------------------------------------------------

    def _compare(
        self,
        node: peewee.Node,
        op: CompareOperator,
        expected: Any,
        binding: AttributeBinding,
        *,
        folded: bool = False,
        json: bool = False,
    ) -> peewee.Node:
        """``node op expected`` with scim2-models' semantics (``_compare`` in scim2_models.path.visitor)."""
        if expected is None:
            if op == CompareOperator.eq:
                return node.is_null()
            if op == CompareOperator.ne:
                return node.is_null(False)
            return FALSE
        if isinstance(expected, str):
            try:
                key = binding.comparable(expected)
            except ValueError:
                return TRUE if op == CompareOperator.ne else FALSE
            left = node if folded or binding.case_exact else self.dialect.fold(node)
            return self._compare_text(left, op, key)
        if isinstance(expected, datetime) and json:
            return FALSE
        operand = self.dialect.json_literal(expected) if json else expected
        if op == CompareOperator.eq:
            return node == operand
        if op == CompareOperator.ne:
            return node.is_null() | (node != operand)
        if op in (CompareOperator.co, CompareOperator.sw, CompareOperator.ew):
            return FALSE
        return {
            CompareOperator.gt: node > operand,
            CompareOperator.ge: node >= operand,
            CompareOperator.lt: node < operand,
            CompareOperator.le: node <= operand,
        }[op]

    def _compare_text(self, left: peewee.Node, op: CompareOperator, key: str) -> peewee.Node:
        d = self.dialect
        if op == CompareOperator.eq:
            return left == key
        if op == CompareOperator.ne:
            return left.is_null() | (left != key)
        if op in (CompareOperator.co, CompareOperator.sw, CompareOperator.ew) and key == "":
            return left.is_null(False)
        if op == CompareOperator.co:
            return d.contains(left, key)
        if op == CompareOperator.sw:
            return d.starts_with(left, key)
        if op == CompareOperator.ew:
            return d.ends_with(left, key)
        text = d.text(left)
        return {
            CompareOperator.gt: text > key,
            CompareOperator.ge: text >= key,
            CompareOperator.lt: text < key,
            CompareOperator.le: text <= key,
        }[op]


class _ElementCompiler(FilterVisitor[peewee.Node]):
    """The filter inside a value path (``emails[type eq "work" and value co "@"]``), on one element."""

    def __init__(
        self,
        outer: FilterCompiler,
        item_model: Any,
        head: AttributeBinding,
        relation: tuple[Any, Any] | None = None,
    ) -> None:
        self.outer = outer
        self.item_model = item_model
        self.head = head
        self.relation = relation

    def _bind(self, attr_path: AttrPath, for_comparison: bool) -> AttributeBinding | None:
        if not isinstance(self.item_model, type):
            return None
        binding = _resolve_filter_path(self.item_model, attr_path, strict=False, for_comparison=for_comparison)
        return binding._nested_in(self.head.urn) if binding is not None else None

    def visit_comparison(self, node: Comparison) -> peewee.Node:
        binding = self._bind(node.attr_path, for_comparison=True)
        if binding is None or binding.sub_field_name is not None:
            return FALSE
        _validate_operator(binding, node.op)
        expected = coerce_value(binding, node.value, node.op)
        target = self._sub(binding)
        if target is None:
            return TRUE if node.op == CompareOperator.ne else FALSE
        column, folded = target
        return self.outer._compare(column, node.op, expected, binding, folded=folded, json=self.relation is None)

    def _sub(self, binding: AttributeBinding) -> tuple[peewee.Node, bool] | None:
        name = _alias(self.item_model, binding.field_name)
        if self.relation is not None:
            member, group = self.relation
            return self.outer.relation.sub_column(name, member, group)
        return self.outer.dialect.element_value([name]), False

    def visit_present(self, node: Present) -> peewee.Node:
        binding = self._bind(node.attr_path, for_comparison=False)
        if binding is None or binding.sub_field_name is not None:
            return FALSE
        target = self._sub(binding)
        if target is None:
            return FALSE
        return self.outer._present_json(target[0])

    def visit_not(self, node: Not) -> peewee.Node:
        return _negate(self.visit(node.expr))

    def visit_logical_expr(self, node: LogicalExpr) -> peewee.Node:
        return _join(node.op, [self.visit(term) for term in node.terms])

    def visit_value_path(self, node: ValuePath) -> peewee.Node:
        raise InvalidFilterException(detail="a value path cannot be nested in another (RFC 7644 §3.4.2.2)")


def _join(op: LogicalOperator, terms: list[peewee.Node]) -> peewee.Node:
    """``a AND b AND c`` flat: peewee's binary ``&`` nests a parenthesis per term, which overflows SQLite's parser
    stack near 90 terms (``parser stack overflow``)."""
    if len(terms) == 1:
        return terms[0]
    glue = " AND " if op == LogicalOperator.and_ else " OR "
    return peewee.NodeList(terms, glue=glue, parens=True)


def _negate(condition: peewee.Node) -> peewee.Node:
    """NOT with two-valued logic: a comparison on a missing value is false, so its negation is true."""
    return ~fn.COALESCE(condition, False)


def _alias(model: Any, field_name: str) -> str:
    field = model.model_fields[field_name]
    return field.serialization_alias or field.alias or field_name
