"""The state of a live follower (:class:`Layers`): a base index, the spaces written since
it was built, and how a query reads the two as one dataset.

- The **base** is a :class:`~geosearch.backends.memory.MemoryBackend` of the active
  spaces as of ``base_seq``. It is never changed: a server builds it before forking its
  workers, which share it page for page.
- The **hidden** rows are the base's spaces written since (moved, changed, closed): every
  query of the base passes over them, through a view of it that shares its indexes
  (:meth:`~geosearch.backends.memory_index.MemoryIndex.without`).
- The **overlay** is a small MemoryBackend of the active spaces written since
  ``base_seq``, as they stand at ``seq``: made again from its rows at each applied batch
  (its size is bounded by the compaction).

A state is immutable: a batch of changes makes a new one (:meth:`Layers.applied`), and
the follower swaps it in with one assignment, so a query that took a state reads it to
its end. :meth:`Layers.compacted` folds the overlay into a new base.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geosearch.backends.follower_rows import CHANGED
from geosearch.backends.memory import MemoryBackend
from geosearch.model import Space


def _active_by_id(rows: pa.Table) -> pa.Table:
    """The active rows, by id: in the order the memory index keeps them, so that its
    table is this one, not a sorted copy."""
    return rows.filter(pc.equal(rows["status"], "active")).sort_by("id")


@dataclass(frozen=True)
class Layers:
    """One state of a follower: the dataset ``version`` with every change up to ``seq``.

    ``base`` holds the active spaces as of ``base_seq`` (its rows: ``base_rows``);
    ``shown`` is the view of it that every query reads, without the ``hidden`` rows
    (a boolean per base row); ``overlay`` the active spaces written since, as they now
    are (None when there are none; its rows: ``overlay_rows``).
    """

    version: str
    seq: int
    base_seq: int
    base: MemoryBackend
    base_rows: pa.Table
    hidden: np.ndarray
    shown: MemoryBackend
    overlay: MemoryBackend | None
    overlay_rows: pa.Table

    @classmethod
    def of(cls, rows: pa.Table, version: str, seq: int) -> Layers:
        """A state of one base, the spaces of ``rows`` (:data:`.follower_rows.
        ROW_COLUMNS`; the active ones are kept) as of ``seq``."""
        rows = _active_by_id(rows)
        base = MemoryBackend(rows, version)
        hidden = np.zeros(base.size, dtype=bool)
        return cls(version, seq, seq, base, rows, hidden, base.without(hidden), None,
                   rows.slice(0, 0))

    @property
    def written(self) -> int:
        """How many spaces the state holds beside its base: the overlay's and those the
        base hides (what a compaction folds in)."""
        return self.overlay_rows.num_rows + int(np.count_nonzero(self.hidden))

    def applied(self, ids: list[str], rows: pa.Table, seq: int) -> Layers:
        """The state with the spaces ``ids`` as ``rows`` hold them at ``seq`` (their
        rows now, of any status; a space without a row has left): each in the overlay
        when active, hidden in the base."""
        named = pa.array(ids, pa.string())
        kept = self.overlay_rows.filter(pc.invert(pc.is_in(self.overlay_rows["id"],
                                                           value_set=named)))
        overlay_rows = _active_by_id(pa.concat_tables([kept, rows]))
        hidden = self.hidden.copy()
        wanted = np.asarray(ids, dtype=str)
        at = np.searchsorted(self.base.ids, wanted)
        inside = at < self.base.size
        found = at[inside][self.base.ids[at[inside]] == wanted[inside]]
        hidden[found] = True
        overlay = MemoryBackend(overlay_rows, self.version) if overlay_rows.num_rows else None
        return Layers(self.version, seq, self.base_seq, self.base, self.base_rows, hidden,
                      self.base.without(hidden), overlay, overlay_rows)

    def compacted(self) -> Layers:
        """The state with its overlay folded into a new base: the base's spaces but the
        hidden ones, and the overlay's."""
        gone = pa.array(self.base.ids[self.hidden].tolist(), pa.string())
        kept = self.base_rows.filter(pc.invert(pc.is_in(self.base_rows["id"],
                                                        value_set=gone)))
        return Layers.of(pa.concat_tables([kept, self.overlay_rows]), self.version, self.seq)

    def walk(self, seq: int | None) -> tuple[MemoryBackend, MemoryBackend | None]:
        """The base view and the overlay a page reads: for the later pages of a walk by
        distance read at ``seq``, without the spaces written after it (a space that
        moved during the walk is met at most once); the state's own for any other."""
        if seq is None or seq >= self.seq:
            return self.shown, self.overlay
        shown = self.shown
        if seq < self.base_seq:  # spaces of the base written after the walk's seq
            later = self.base_rows[CHANGED].to_numpy() > seq
            shown = self.base.without(self.hidden | later)
        overlay = self.overlay
        if overlay is not None:
            later = self.overlay_rows[CHANGED].to_numpy() > seq
            overlay = overlay.without(later) if later.any() else overlay
        return shown, overlay

    def get(self, space_id: str) -> Space | None:
        """One active space by id: as the overlay holds it, else as the base does unless
        it was written since."""
        if self.overlay is not None and (space := self.overlay.get(space_id)) is not None:
            return space
        at = int(np.searchsorted(self.base.ids, space_id))
        if at < self.base.size and self.base.ids[at] == space_id and self.hidden[at]:
            return None
        return self.base.get(space_id)
