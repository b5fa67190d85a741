"""Writes to keeper.db's discoveries that need no queue: edits.

A discovery is created with its queue item, by the submit services of :mod:`syncq.services`.
An edit (the admin; any later API or CLI edit) goes through :func:`discovery_update`, which
checks it by the submission's own rules (:mod:`discoveries.rules`).
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import DEFAULT_DB_ALIAS, transaction

from discoveries.models import Discovery
from discoveries.rules import EDITABLE, discovery_changes_validate


def discovery_values(discovery: Discovery) -> dict[str, object]:
    """The stored values of ``discovery``'s editable columns, as
    :func:`discoveries.rules.discovery_changes_validate` reads them (``metadata`` holding the
    type's fields)."""
    return {name: getattr(discovery, name) for name in EDITABLE}


def discovery_update(*, discovery_id: int, changes: Mapping[str, object]) -> Discovery:
    """Change the columns ``changes`` names (of :data:`discoveries.rules.EDITABLE`; the type's
    fields as a JSON object under ``metadata``) of discovery ``discovery_id``, in one keeper.db
    transaction, after checking them by the submission's rules.

    Returns the saved :class:`Discovery`. Raises
    :class:`discoveries.rules.DiscoveryInvalid` (nothing written) and
    ``Discovery.DoesNotExist``. The queue is not touched: an operator retries the sync
    separately.
    """
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        discovery = Discovery.objects.select_for_update().get(pk=discovery_id)
        values = discovery_changes_validate(current=discovery_values(discovery), changes=changes)
        for name, value in values.items():
            setattr(discovery, name, value)
        if values:
            discovery.save(update_fields=list(values))
    return discovery
