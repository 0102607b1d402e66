"""The Milvus layout of the shared gallery: collection names, schemas, indexes, filter expressions and paging.

Milvus 2.3 allows one vector field per collection, so the gallery is one collection per kind of vector:

* ``<prefix>_entries``: every entry (id, ``person_id``, ``camera_id``, metadata, created) whatever the
  model. Milvus needs a vector field in every collection: this one carries a 2-value placeholder.
* ``<prefix>_blocks``: id blocks claimed by processes. Gallery ids must stay below 2^53 (the API's limit,
  exact in every JSON parser), which Milvus' own auto ids (timestamps, ~2^58) exceed, and Milvus has no
  atomic counter. So each process claims a random block of 2^24 ids (one of 2^29 blocks): it inserts a claim
  row, then reads every claim of that block at Strong consistency and keeps the block only if the claim is
  the only one. Two claimants cannot both miss each other (each reads after its own write, and Strong reads
  see every earlier write), so at most one keeps a block; on a tie both draw again.
* ``<prefix>_<model key>_<kind>``, per model id: ``raw`` (the embeddings, L2: it answers ``euclidean`` and
  ``/verify`` by gallery id), ``cosine``, ``correlation``, ``softmax`` (the augmented vectors of the exact
  head search, inner product, always FLAT), ``pairwise`` (descriptor shortlist) and ``encodings`` (the
  comparator encodings, rounded through float16 as in the embedded store, never searched). Each repeats
  ``person_id`` and ``camera_id`` so filters run inside Milvus' search, before the top-k cut. The model key is
  a hash (collection names allow letters, digits and ``_``); the description holds the model id and kind.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from service.contract.scoring import get as get_metric
from service.gallery.filters import SearchFilter
from service.gallery.index import IndexConfig

#: Milvus' largest top-k, query window (offset + limit) and vector length (2.3).
MAX_TOP_K = 16_384
QUERY_WINDOW = 16_384
MAX_DIM = 32_768
#: UTF-8 bytes of a 128-character person or camera id.
ID_BYTES = 512
PLACEHOLDER_DIM = 2
#: Gallery ids are ``block << BLOCK_BITS | n``: blocks 1 … 2^29 − 1 of 2^24 ids, all below 2^53.
BLOCK_BITS = 24
BLOCKS = 2 ** (53 - BLOCK_BITS)
#: Collection kinds per model: raw embeddings, one per searchable metric, and the comparator encodings.
RAW, ENCODINGS = "raw", "encodings"


def model_key(model_id: str) -> str:
    """A collection-name-safe key of a model id."""
    return "m" + hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:12]


def collection_name(prefix: str, model_id: str, kind: str) -> str:
    """The collection of one model's vectors of one kind."""
    return f"{prefix}_{model_key(model_id)}_{kind}"


def owned(prefix: str, name: str) -> bool:
    """Whether a collection name is one of this layout's under ``prefix`` (not another prefix's)."""
    return re.fullmatch(rf"{re.escape(prefix)}_(entries|blocks|m[0-9a-f]{{12}}_[a-z]+)", name) is not None


def blocks_name(prefix: str) -> str:
    """The collection of id block claims."""
    return f"{prefix}_blocks"


def entries_name(prefix: str) -> str:
    """The collection of every entry."""
    return f"{prefix}_entries"


def describe(model_id: str, kind: str) -> str:
    """The description stored with a model collection (read back by :func:`parse_description`)."""
    return json.dumps({"model_id": model_id, "kind": kind})


def parse_description(text: str) -> tuple[str, str] | None:
    """(model id, kind) of a collection this module created, else None."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict) or "model_id" not in data or "kind" not in data:
        return None
    return str(data["model_id"]), str(data["kind"])


def quote(value: str) -> str:
    """A string literal for a Milvus boolean expression."""
    return json.dumps(value, ensure_ascii=False)


def _names(values: frozenset[str]) -> str:
    return ", ".join(quote(v) for v in sorted(values))


def search_filter(where: SearchFilter) -> str:
    """The boolean expression of a search filter ('' for none)."""
    parts: list[str] = []
    if where.camera_ids is not None:
        parts.append(
            f"(has_camera == true and camera_id in [{_names(where.camera_ids)}])"
            if where.camera_ids
            else "id < 0"
        )
    if where.exclude_camera_ids:
        parts.append(f"(has_camera == false or camera_id not in [{_names(where.exclude_camera_ids)}])")
    if where.person_ids is not None:
        parts.append(f"person_id in [{_names(where.person_ids)}]" if where.person_ids else "id < 0")
    if where.created_after is not None:
        parts.append(f"created_s >= {float(where.created_after)!r}")
    if where.created_before is not None:
        parts.append(f"created_s < {float(where.created_before)!r}")
    return " and ".join(parts)


def ids_filter(ids: list[int]) -> str:
    """``id in [...]``."""
    return f"id in [{', '.join(str(int(i)) for i in ids)}]"


def vector_kind(metric: str) -> str:
    """The collection kind a served metric searches: an L2 metric (euclidean) ranks the embeddings as they
    are, so it searches the ``raw`` collection every model has; the inner-product metrics have their own."""
    return metric if get_metric(metric).inner_product else RAW


def metric_type(kind: str) -> str:
    """Milvus metric of a collection kind: squared L2 for raw embeddings, inner product otherwise."""
    return "L2" if kind in (RAW, ENCODINGS) else "IP"


def index_params(kind: str, config: IndexConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(index build parameters, search parameters) of a kind's vector field.

    Softmax (exact head search) and the never-searched encodings are always FLAT; the others follow
    ``REID_INDEX_TYPE`` (FLAT, IVF_FLAT, HNSW).
    """
    index_type = "flat" if kind in ("softmax", ENCODINGS) else config.index_type
    if index_type == "ivf":
        return {"index_type": "IVF_FLAT", "params": {"nlist": config.ivf_nlist}}, {
            "nprobe": config.ivf_nprobe
        }
    if index_type == "hnsw":
        build = {"index_type": "HNSW", "params": {"M": config.hnsw_m, "efConstruction": 200}}
        return build, {"ef": config.hnsw_ef_search}
    return {"index_type": "FLAT", "params": {}}, {}


def add_label_fields(schema: Any, data_type: Any) -> None:
    """The fields every collection repeats so that searches filter inside Milvus."""
    schema.add_field("id", data_type.INT64, is_primary=True)
    schema.add_field("person_id", data_type.VARCHAR, max_length=ID_BYTES)
    schema.add_field("camera_id", data_type.VARCHAR, max_length=ID_BYTES)
    schema.add_field("has_camera", data_type.BOOL)
    schema.add_field("created_s", data_type.DOUBLE)  # UNIX seconds, for the enrolment-time filters


def scoped(expr: str, after: int) -> str:
    """``expr`` restricted to ids above ``after``."""
    return f"({expr}) and id > {after}" if expr else f"id > {after}"


def walk_ids(
    query: Callable[[str, int], list[dict[str, Any]]], expr: str, start_after: int = -1
) -> Iterator[list[int]]:
    """Every id matching ``expr``, ascending, in batches of :data:`QUERY_WINDOW` (Milvus returns a query's
    rows by primary key when a limit is given, so ``id > last`` pages through any number of rows).

    Args:
        query: ``(filter, limit) → rows`` with an ``id`` per row.
        expr: The filter ('' for all rows).
        start_after: Only ids above this.
    """
    last = start_after
    while True:
        rows = query(scoped(expr, last), QUERY_WINDOW)
        ids = sorted(int(r["id"]) for r in rows)
        if not ids:
            return
        yield ids
        if len(ids) < QUERY_WINDOW:
            return
        last = ids[-1]
