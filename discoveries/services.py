"""Changes to keeper.db's discoveries themselves, checked by the submission's own rules.

A discovery is created with its queue item, and edited or deleted with it, by the services of
:mod:`syncq.services` (``discovery_submit``, ``discovery_update``, ``discovery_delete``), so
that every change also reaches VH; they apply an edit here, by :func:`discovery_changes_apply`.
"""

from __future__ import annotations

from collections.abc import Mapping

from discoveries.models import Discovery
from discoveries.rules import EDITABLE, discovery_changes_validate


def discovery_values(discovery: Discovery) -> dict[str, object]:
    """The stored values of ``discovery``'s editable columns, as
    :func:`discoveries.rules.discovery_changes_validate` reads them (``metadata`` holding the
    type's fields)."""
    return {name: getattr(discovery, name) for name in EDITABLE}


def discovery_changes_apply(*, discovery: Discovery, changes: Mapping[str, object]) -> dict:
    """Check ``changes`` (of :data:`discoveries.rules.EDITABLE`; the type's fields as a JSON
    object under ``metadata``) against ``discovery`` by the submission's own rules, set them
    and save only the columns that change, inside the caller's keeper.db transaction.

    Returns ``{column: new value}`` of what changed (empty: nothing saved). Raises
    :class:`discoveries.rules.DiscoveryInvalid`, with nothing saved. The queue is the caller's:
    :func:`syncq.services.discovery_update` sends the change on to VH.
    """
    current = discovery_values(discovery)
    checked = discovery_changes_validate(current=current, changes=changes)
    values = {name: value for name, value in checked.items() if current.get(name) != value}
    for name, value in values.items():
        setattr(discovery, name, value)
    if values:
        discovery.save(update_fields=list(values))
    return values
