"""Planning a weight analysis: every tensor of a source becomes a task or a 'skipped' row.

A task is one unit of work for a backend: one matrix (kind ``matrix``; a 2-D tensor, or one
expert's matrix of a stacked ``(n_experts, out, in)`` tensor, key ``NAME[e]``) or one block's
attention projections (kind ``heads``). Tensors that are not analyzed (integer dtypes, 1-D,
3-D tensors that are not expert stacks, higher ranks, matrices outside the size filters) get
a 'skipped' row with the reason, so the table accounts for every tensor of the checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from ..arch import Capability, find_spec, read_geometry, spec_for, weight_role
from ..arch.roles import ATTENTION_ROLES, VECTOR_ROLES
from ..errors import ArchitectureError
from ..models.tensor_source import TensorInfo, TensorSource
from .analysis import skip_reason
from .options import WeightsOptions
from .rows import matrix_lead, skipped_row

HEAD_ROLES = set(ATTENTION_ROLES) | set(VECTOR_ROLES)
EXPERT_KEY = re.compile(r"^(?P<name>.+)\[(?P<expert>\d+)\]$")
"""Task key of one expert's matrix in a stacked ``(n_experts, out, in)`` tensor: ``NAME[e]``."""
_INTEGER_PREFIXES = ("int", "uint", "bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64")


class TaskKind(StrEnum):
    """What a task computes (and which row log its rows go to)."""

    MATRIX = "matrix"
    """One matrix: one row of the weights table."""
    HEADS = "heads"
    """One block's q, k, v, o: its rows of the heads table."""


@dataclass(frozen=True)
class Task:
    """One unit of work.

    Attributes:
        key: unique name (the tensor name, ``NAME[e]`` for an expert, ``heads:<block>``).
        kind: :class:`TaskKind`.
        names: the tensors it reads.
        block: block index (-1 outside the blocks).
        roles: for a heads task, the role of each of ``names``.
        shape: for a matrix task, the matrix's shape as stored.
        role, expert: for a matrix task, its weight role and expert index.
    """

    key: str
    kind: TaskKind
    names: tuple[str, ...]
    block: int = -1
    roles: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()
    role: str = "other"
    expert: int | None = None

    def lead(self) -> dict:
        """The lead columns of a matrix task's row."""
        return matrix_lead(self.key, self.block, self.role, self.expert, self.shape)


@dataclass
class Plan:
    """The tasks of a run and the rows of the tensors that need no work."""

    matrix_tasks: list[Task] = field(default_factory=list)
    head_tasks: list[Task] = field(default_factory=list)
    skipped_rows: list[dict] = field(default_factory=list)

    @property
    def tasks(self) -> list[Task]:
        return self.matrix_tasks + self.head_tasks


def is_float_dtype(dtype: str) -> bool:
    """True for floating-point and quantized storage types (not integer buffers like position_ids)."""
    return not dtype.lower().startswith(_INTEGER_PREFIXES)


def tensor_skip_reason(info: TensorInfo, stacked: bool) -> str:
    """Why a tensor is not analyzed at all, by dtype and rank ('' if it holds matrices)."""
    shape = tuple(info.shape)
    if not is_float_dtype(info.dtype):
        return f"integer dtype {info.dtype} (quantized weights or a buffer): not analyzed"
    if len(shape) == 2 or (len(shape) == 3 and stacked):
        return ""
    if len(shape) == 3:
        return f"3-D tensor of shape {shape} that is not a stack of expert matrices: not analyzed"
    return f"{len(shape)}-D tensor of shape {shape}: not a matrix"


def _matrices(name: str, shape: tuple[int, ...], stacked: bool) -> list[tuple[str, tuple[int, ...], int | None]]:
    """(task key, 2-D shape, expert) of each matrix in a tensor: itself, or one per expert."""
    if stacked and len(shape) == 3:
        return [(f"{name}[{e}]", tuple(shape[1:]), e) for e in range(shape[0])]
    return [(name, tuple(shape), None)]


def plan_tasks(source: TensorSource, options: WeightsOptions) -> Plan:
    """Every tensor becomes matrix tasks or a 'skipped' row (with options.matrices); with
    options.heads, every block with attention projections becomes a head task.

    Raises:
        ArchitectureError: the tensor names do not match the config's family, or per-head
            spectra were asked of a family without them.
    """
    config = source.config()
    spec = find_spec(config)
    plan = Plan()
    by_block: dict[int, dict[str, str]] = {}
    unmatched: list[str] = []
    matched = 0
    for info in source.tensors():
        role = weight_role(info.name, spec)
        floating = is_float_dtype(info.dtype)
        if floating and role.block >= 0 and len(info.shape) >= 2:
            matched += role.known
            if not role.known:
                unmatched.append(info.name)
        if floating and role.role in HEAD_ROLES and role.block >= 0 and len(info.shape) <= 2:
            by_block.setdefault(role.block, {})[role.role] = info.name
        if options.matrices:
            _plan_matrices(plan, info, role, options)
    if spec is not None and unmatched and not matched:
        raise ArchitectureError(
            f"the tensor names do not match the config's family ({spec.name}): no block matrix has a name of that "
            f"family (e.g. {unmatched[0]!r}); is config.json the one of these weights?"
        )
    if options.heads:
        plan.head_tasks = _head_tasks(config, by_block)
    return plan


def _plan_matrices(plan: Plan, info: TensorInfo, role, options: WeightsOptions) -> None:
    reason = tensor_skip_reason(info, role.stacked)
    if reason:
        plan.skipped_rows.append(
            skipped_row(matrix_lead(info.name, role.block, role.role, role.expert, info.shape), reason)
        )
        return
    for key, shape, stacked_expert in _matrices(info.name, tuple(info.shape), role.stacked):
        expert = role.expert if stacked_expert is None else stacked_expert
        reason = skip_reason(shape, options)
        if reason:
            plan.skipped_rows.append(skipped_row(matrix_lead(key, role.block, role.role, expert, shape), reason))
        else:
            plan.matrix_tasks.append(
                Task(key, TaskKind.MATRIX, (key,), role.block, shape=shape, role=role.role, expert=expert)
            )


def _head_tasks(config: dict, by_block: dict[int, dict[str, str]]) -> list[Task]:
    try:
        spec = spec_for(config)
    except ArchitectureError as err:
        raise ArchitectureError(f"per-head spectra: {err}") from None
    spec.require(Capability.HEADS, "per-head spectra")
    if read_geometry(config, spec.attention) is None:
        raise ArchitectureError(f"per-head spectra: the {spec.name} config gives no head counts")
    tasks = []
    for block, roles in sorted(by_block.items()):
        if {"q", "k", "v", "o"} <= roles.keys() or {"qkv", "o"} <= roles.keys():
            tasks.append(Task(f"heads:{block}", TaskKind.HEADS, tuple(roles.values()), block, tuple(roles.keys())))
    return tasks
