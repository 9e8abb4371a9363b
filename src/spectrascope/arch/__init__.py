"""Architecture registry: the single source of what spectrascope knows about a model family.

One :class:`ArchSpec` per family (one file each: ``llama.py``, ``gemma.py``, ``gpt2.py`` ...),
resolved for a config by :func:`spec_for` (``config.model_type`` -> the family's resolver,
see :mod:`spectrascope.arch.registry`). A spec gives the role of every weight tensor, the
head geometry under the family's own config keys, the TransformerLens site of each module,
the residual identities of its block, the norm each reader matrix reads, the final norm and
unembedding (with softcapping or scaling), mixture-of-experts routers, GGUF names, and
whether the forward resumes at a layer; what a config cannot do is refused in one line
(:meth:`ArchSpec.require`). The family x capability table: :func:`capability_table`.

Adding a family: write ``spectrascope/arch/<family>.py`` (an ``ArchSpec`` and a resolver
``spec(config)``), add one line to :data:`~spectrascope.arch.registry.REGISTRY`, and add the
family's tiny config to ``tests/arch/test_families.py``.
"""

from __future__ import annotations

from spectrascope.arch.geometry import HeadGeometry, read_geometry
from spectrascope.arch.registry import (
    REGISTRY,
    find_spec,
    spec_for,
    spec_for_gguf,
    spec_for_model_type,
    supported_model_types,
)
from spectrascope.arch.roles import ROLES, WeightRole, block_index, weight_role
from spectrascope.arch.site_kinds import SiteKind
from spectrascope.arch.spec import (
    ArchSpec,
    AttentionSpec,
    BlockKind,
    Capability,
    Io,
    MoESpec,
    NormKind,
    NormSpec,
    QkNorm,
    QkvLayout,
    Readout,
    SitePoint,
    WeightPattern,
    config_get,
)

__all__ = [
    "REGISTRY",
    "ROLES",
    "ArchSpec",
    "AttentionSpec",
    "BlockKind",
    "Capability",
    "HeadGeometry",
    "Io",
    "MoESpec",
    "NormKind",
    "NormSpec",
    "QkNorm",
    "QkvLayout",
    "Readout",
    "SiteKind",
    "SitePoint",
    "WeightPattern",
    "WeightRole",
    "block_index",
    "config_get",
    "find_spec",
    "head_geometry",
    "read_geometry",
    "spec_for",
    "spec_for_gguf",
    "spec_for_model_type",
    "supported_model_types",
    "weight_role",
]


def head_geometry(config: object) -> HeadGeometry | None:
    """Head geometry of a config under its family's keys.

    A registered family with attention: its keys (Falcon's key/value rule, explicit
    ``head_dim`` ...). A family without attention or an unknown ``model_type``: None (the
    keys of an unknown family are not guessed). A config without ``model_type``: the common
    keys (``num_attention_heads``, ``num_key_value_heads``, ``head_dim``, ``hidden_size``).
    """
    from spectrascope.arch.spec import model_type_of

    if not model_type_of(config):
        return read_geometry(config)
    spec = find_spec(config)
    if spec is None or spec.attention is None:
        return None
    return read_geometry(config, spec.attention)
