"""Validation of wiring JSON documents, before anything is built from them.

A wiring document (`Wiring.to_dict`, `BlockWiring.to_dict`, `CellWiring.to_dict`) is checked in two passes:

1. Its shape and scalar types with pydantic (strict: no "7" for a seed, no "no" for a bool, no 2 for a polarity,
   no unknown keys), and its sizes against the documented bounds (`MAX_UNITS`, `MAX_INPUTS`, `MAX_CELLS`) before any
   matrix is allocated.
2. What pydantic cannot see: matrices (rectangular, entries in {-1, 0, +1}, of the declared size), ids and names in
   range, edges that point forward, and an edit history that is consistent with the document's current values (each
   edit is rewound on a scratch copy: every change's `after` must be what the wiring holds at that point and
   `before` must be a valid value, so `undo()` can only write valid values at valid places).

Every error is a `ValueError` (or a pydantic `ValidationError`, also a `ValueError`) that names the document, the
field path (`edits.history[2].changes[0].target`) and the bad value.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from .checks import MAX_INPUTS, MAX_UNITS

MAX_CELLS = 4096  # cells of one CellWiring (an xLSTM block has 18)
MAX_BLOCKS = 4096  # blocks of one BlockWiring (xLSTM-7B has 32)
MAX_HISTORY = 100_000  # edits kept in one document


def _polarity(value: int) -> int:
    if value not in (-1, 1):
        raise ValueError(f"polarity must be -1 or +1, got {value!r}")
    return value


Polarity = Annotated[StrictInt, AfterValidator(_polarity)]
Seed = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]
Sparsity = Annotated[float, Field(strict=True, ge=0.0, lt=1.0)]
Count = Annotated[StrictInt, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ChangeDoc(_Strict):
    target: list[StrictStr | StrictInt] = Field(min_length=1)
    before: Any
    after: Any


class EditDoc(_Strict):
    kind: StrictStr
    changes: list[ChangeDoc] = Field(min_length=1)
    version: Count
    undoes: StrictStr | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class EditsDoc(_Strict):
    version: Count = 0
    history: list[EditDoc] = Field(default_factory=list, max_length=MAX_HISTORY)


class NeuronDoc(_Strict):
    format: StrictStr
    config: dict[str, Any]
    input_dim: Annotated[StrictInt, Field(ge=1, le=MAX_INPUTS)] | None
    sensory_generated: StrictBool
    output_dim: Annotated[StrictInt, Field(ge=1, le=MAX_UNITS)] | None
    adjacency_matrix: list[Any]
    sensory_adjacency_matrix: list[Any] | None
    edits: EditsDoc


class BlockSpecDoc(_Strict):
    index: Count
    block_type: StrictStr
    dims: dict[str, StrictInt]
    params: dict[str, list[Count]]


class EdgeDoc(_Strict):
    src: StrictStr
    dst: StrictStr
    polarity: Polarity = 1
    enabled: StrictBool = True
    kind: StrictStr = "residual"


class BlockDoc(_Strict):
    format: StrictStr
    source: StrictStr | None
    config: dict[str, Any]
    model_params: dict[str, list[Count]]
    blocks: list[BlockSpecDoc] = Field(min_length=1, max_length=MAX_BLOCKS)
    edges: list[EdgeDoc]
    edits: EditsDoc


class CellDoc(_Strict):
    name: StrictStr = Field(min_length=1)
    cell_type: StrictStr = Field(min_length=1)
    params: dict[str, Any]
    polarity: Polarity = 1


class ConnectionDoc(_Strict):
    src: StrictStr
    dst: StrictStr
    polarity: Polarity = 1
    sparsity: Sparsity = 0.0
    seed: Seed = 0
    enabled: StrictBool = True
    weight: StrictStr | None = None
    shape: list[Count] = Field(max_length=8)


class CellWiringDoc(_Strict):
    format: StrictStr
    prefix: StrictStr
    seed: Seed
    cells: list[CellDoc] = Field(max_length=MAX_CELLS)
    connections: list[ConnectionDoc]
    featurizers: dict[str, StrictStr]
    feature_groups: dict[str, list[list[Count]]]
    edits: EditsDoc


def _location(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def parse(model: type[_Strict], data, what: str, format: str):
    """`data` validated as `model`; the error names `what`, each bad field's path and its value."""
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(data).__name__}")
    if data.get("format") != format:
        raise ValueError(f"not a {what}: format is {data.get('format')!r}, expected {format!r}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors()[:10]:
            value = e.get("input")
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            lines.append(f"{_location(e['loc'])}: {e['msg']} (got {shown})" if e["type"] != "missing"
                         else f"{_location(e['loc'])}: missing")
        more = "" if err.error_count() <= 10 else f" (and {err.error_count() - 10} more)"
        raise ValueError(f"{what}: " + "; ".join(lines) + more) from None


def matrix_rows(values, rows: int, cols: int, where: str) -> None:
    """`values` is a list of `rows` lists of `cols` entries, each -1, 0 or +1 (ints; checked before numpy sees it)."""
    if not isinstance(values, list) or len(values) != rows:
        got = f"{len(values)} rows" if isinstance(values, list) else type(values).__name__
        raise ValueError(f"{where}: expected {rows} rows of {cols}, got {got}")
    for r, row in enumerate(values):
        if not isinstance(row, list) or len(row) != cols:
            got = f"{len(row)} entries" if isinstance(row, list) else repr(row)
            raise ValueError(f"{where}[{r}]: expected a row of {cols} entries, got {got} (ragged matrix)")
        for c, entry in enumerate(row):
            if type(entry) is not int or entry not in (-1, 0, 1):
                raise ValueError(f"{where}[{r}][{c}] = {entry!r}: entries must be the integers -1, 0 or +1")


def check_history(edits: EditsDoc, what: str, read: Callable[[tuple], Any], check: Callable[[tuple, Any, str], None]):
    """Rewind the history on a scratch overlay, newest edit first (what `undo()` would do).

    read(target): the wiring's current value at `target` (raises ValueError for a target that does not exist);
    check(target, value, where): raises ValueError if `value` is not a valid value for `target`.
    """
    if edits.version < len(edits.history):
        raise ValueError(f"{what}: edits.version is {edits.version} but the history holds {len(edits.history)} edits "
                         "(every edit raises the version by one)")
    overlay: dict[tuple, Any] = {}
    for i in range(len(edits.history) - 1, -1, -1):
        edit = edits.history[i]
        for k in range(len(edit.changes) - 1, -1, -1):
            change = edit.changes[k]
            where = f"{what}: edits.history[{i}].changes[{k}]"
            target = tuple(change.target)
            try:
                current = overlay[target] if target in overlay else read(target)
            except (KeyError, IndexError, TypeError, ValueError) as err:
                raise ValueError(f"{where}.target {list(target)}: {err}") from None
            check(target, change.before, f"{where}.before")
            check(target, change.after, f"{where}.after")
            if current != change.after:
                raise ValueError(f"{where}: after is {change.after!r} but the wiring holds {current!r} at "
                                 f"{list(target)} there (the history does not lead to the saved state)")
            overlay[target] = change.before
