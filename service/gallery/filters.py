"""Search filters (cameras, persons, enrolment time) applied inside the FAISS search.

:class:`EntryTable` keeps every entry's person, camera and creation time as integer-coded numpy columns, so a
filter becomes the array of allowed gallery ids in one vectorized pass; the index search then takes them as a
FAISS ``IDSelectorBatch`` in its ``SearchParameters`` and ranks only those entries (exact on the flat index;
ivf / hnsw visit their usual cells / graph, skipping the others). Nothing is over-fetched and dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

_NONE = -1  # code of a missing camera_id


@dataclass(frozen=True)
class SearchFilter:
    """Which gallery entries a search may return (all conditions hold together).

    Attributes:
        camera_ids: Only entries from these cameras (None: any camera).
        exclude_camera_ids: Never entries from these cameras.
        person_ids: Only entries of these persons (None: any person).
        created_after: Only entries enrolled at or after this time (UNIX seconds).
        created_before: Only entries enrolled strictly before this time (UNIX seconds).
    """

    camera_ids: frozenset[str] | None = None
    exclude_camera_ids: frozenset[str] = frozenset()
    person_ids: frozenset[str] | None = None
    created_after: float | None = None
    created_before: float | None = None

    @classmethod
    def of(
        cls,
        *,
        camera_ids: Iterable[str] | None = None,
        exclude_camera_ids: Iterable[str] | None = None,
        person_ids: Iterable[str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> SearchFilter:
        """A filter from request values (timezone-aware datetimes); empty lists of ids mean no condition."""
        return cls(
            camera_ids=frozenset(camera_ids) if camera_ids else None,
            exclude_camera_ids=frozenset(exclude_camera_ids or ()),
            person_ids=frozenset(person_ids) if person_ids else None,
            created_after=None if created_after is None else created_after.timestamp(),
            created_before=None if created_before is None else created_before.timestamp(),
        )

    @property
    def active(self) -> bool:
        """True when the filter excludes anything."""
        return (
            self.camera_ids is not None
            or bool(self.exclude_camera_ids)
            or self.person_ids is not None
            or self.created_after is not None
            or self.created_before is not None
        )


def created_seconds(created: str) -> float:
    """UNIX seconds of a stored ISO 8601 creation time (naive times are UTC)."""
    return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()


class EntryTable:
    """Person, camera and creation time of every gallery entry, for labels, filters and retention.

    Writes (:meth:`add`, :meth:`remove`) happen under the gallery's write lock and update the columns at once
    (vectorized), so concurrent searches under the read lock only read.
    """

    def __init__(self) -> None:
        self._labels: dict[int, tuple[str, str | None]] = {}
        self._codes: dict[str, int] = {}  # person and camera names → small ints (one code book)
        self._ids = np.empty(0, dtype=np.int64)
        self._persons = np.empty(0, dtype=np.int64)
        self._cameras = np.empty(0, dtype=np.int64)
        self._created = np.empty(0, dtype=np.float64)

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._labels

    def _code(self, name: str) -> int:
        return self._codes.setdefault(name, len(self._codes))

    def add(self, rows: Iterable[tuple[int, str, str | None, str]]) -> None:
        """Record entries: (id, person_id, camera_id, created ISO 8601) each."""
        rows = list(rows)
        for entry_id, person, camera, _ in rows:
            self._labels[int(entry_id)] = (person, camera)
        self._ids = np.concatenate([self._ids, np.array([r[0] for r in rows], dtype=np.int64)])
        self._persons = np.concatenate([self._persons, np.array([self._code(r[1]) for r in rows], np.int64)])
        cams = [_NONE if r[2] is None else self._code(r[2]) for r in rows]
        self._cameras = np.concatenate([self._cameras, np.array(cams, dtype=np.int64)])
        times = [created_seconds(r[3]) for r in rows]
        self._created = np.concatenate([self._created, np.array(times, dtype=np.float64)])

    def remove(self, ids: Iterable[int]) -> None:
        """Forget entries (unknown ids are ignored)."""
        gone = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if not len(gone):
            return
        for i in gone.tolist():
            self._labels.pop(i, None)
        keep = ~np.isin(self._ids, gone)
        self._ids, self._persons = self._ids[keep], self._persons[keep]
        self._cameras, self._created = self._cameras[keep], self._created[keep]

    def label(self, entry_id: int) -> tuple[str, str | None]:
        """(person_id, camera_id) of an entry (("", None) when unknown)."""
        return self._labels.get(entry_id, ("", None))

    def _codes_of(self, names: Iterable[str]) -> np.ndarray:
        return np.array([self._codes[n] for n in names if n in self._codes], dtype=np.int64)

    def select(self, where: SearchFilter) -> np.ndarray:
        """The ids (int64, ascending) of the entries the filter allows."""
        keep = np.ones(len(self._ids), dtype=bool)
        if where.camera_ids is not None:
            keep &= np.isin(self._cameras, self._codes_of(where.camera_ids))
        if where.exclude_camera_ids:
            keep &= ~np.isin(self._cameras, self._codes_of(where.exclude_camera_ids))
        if where.person_ids is not None:
            keep &= np.isin(self._persons, self._codes_of(where.person_ids))
        if where.created_after is not None:
            keep &= self._created >= where.created_after
        if where.created_before is not None:
            keep &= self._created < where.created_before
        return np.sort(self._ids[keep])
