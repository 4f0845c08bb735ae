"""Reading a benchmark's published files: one loader for every task module.

A benchmark ships as HF parquet shards (`data/<split>-*.parquet`), a JSON list or dict of
records, JSONL, or TSV/CSV (VLMEvalKit style), locally or on the Hub. `load_rows` finds the split,
checks the schema and returns the rows with images still encoded; `decode_image` turns any of the
published image encodings (PIL, `{"bytes", "path"}`, raw bytes, base64 text, a relative path) into
an RGB image only when its item is used. Every failure is a `DatasetError` naming the benchmark,
what is missing and where it looked.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from axpo_env.errors import DatasetError

HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")
Rows = Any  # a `datasets.Dataset` or a list of dicts
MAX_IMAGE_BYTES = 64 << 20  # far above any benchmark's image; /dev/zero must not fill memory


@contextmanager
def quiet_datasets() -> Iterator[Any]:
    """Import `datasets` with its progress bars hidden (items load inside env calls)."""
    import datasets

    was_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield datasets
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def column(rows: Rows, name: str) -> list[Any]:
    """One column of `rows` as a list (a list of dicts or a `datasets.Dataset`)."""
    if isinstance(rows, list):
        return [r.get(name) for r in rows]
    return list(rows[name])


def unique_ids(ids: list[str], name: str, what: str) -> list[str]:
    """`ids` (a task's item ids, in order), or a `DatasetError` naming the first repeated ones:
    an episode, a resumed eval and `Task.index_of` find an item by its id."""
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise DatasetError(f"{name} data has duplicate {what}: {', '.join(dupes[:5])}")
    return ids


def has_column(rows: Any, name: str) -> bool:
    """True when every row has `name` (JSON records) or the table has that column."""
    if isinstance(rows, list):
        return all(name in r for r in rows)
    return name in rows.column_names


def check_columns(
    name: str, columns: Sequence[str], required: Sequence[str], where: str,
    any_of: Sequence[Sequence[str]] = (), schema: str = "",
) -> None:
    """Raise a `DatasetError` naming every missing column (and each `any_of` alternative)."""
    missing = [c for c in required if c not in columns]
    missing += [" or ".join(alts) for alts in any_of if not any(c in columns for c in alts)]
    if missing:
        expected = f"; expected {schema}'s schema" if schema else ""
        raise DatasetError(
            f"{name} data at {where} lacks required column(s) {', '.join(missing)} "
            f"(found: {', '.join(sorted(columns)) or 'none'}){expected}."
        )


def split_patterns(split: str) -> list[str]:
    """Where a split's files usually live, in the order we look."""
    patterns = [f"{d}{split}{s}.parquet" for d in ("data/", "") for s in ("-*", "")]
    patterns.append(f"**/{split}-*.parquet")
    for ext in ("json", "jsonl", "tsv", "csv"):
        patterns += [f"{split}.{ext}", f"data/{split}.{ext}"]
    return patterns


def find_split_files(name: str, root: Path, split: str, patterns: Sequence[str] = ()) -> list[Path]:
    """The files of `split` under `root`, trying `patterns` first, then the usual layouts."""
    tried = [*patterns, *split_patterns(split)]
    for pattern in tried:
        files = sorted(p for p in root.glob(pattern) if p.is_file())
        if files:
            return files
    found = sorted(
        str(p.relative_to(root)) for p in root.glob("**/*")
        if p.suffix in (".parquet", ".json", ".jsonl", ".tsv", ".csv")
    )[:8]
    raise DatasetError(
        f"no {name} split {split!r} under {root}: looked for {', '.join(tried)} "
        f"(data files there: {', '.join(found) or 'none'})."
    )


def _read_records(name: str, path: Path, id_column: str) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            data: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"could not read {name} JSON {path}: {e}") from e
    if isinstance(data, dict):  # {id: record}, as several GitHub releases ship it
        data = [
            {**rec, id_column: rec.get(id_column, key)} if isinstance(rec, dict) else rec
            for key, rec in data.items()
        ]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DatasetError(f"{path}: expected a list of {name} records or a dict id -> record")
    return data


def _read_files(name: str, files: Sequence[Path], split: str, id_column: str) -> Rows:
    suffix = files[0].suffix
    if suffix in (".json", ".jsonl"):
        return [rec for f in files for rec in _read_records(name, f, id_column)]
    builder = {".parquet": "parquet", ".tsv": "csv", ".csv": "csv"}.get(suffix)
    if builder is None:
        raise DatasetError(f"{files[0]}: expected a .parquet, .json, .jsonl, .tsv or .csv file")
    kwargs = {"sep": "\t"} if suffix == ".tsv" else {}
    where = ", ".join(str(f) for f in files)
    with quiet_datasets() as datasets:
        try:
            return datasets.load_dataset(
                builder, data_files={split: [str(f) for f in files]}, split=split, **kwargs
            )
        except Exception as e:  # datasets raises many types on a bad file
            raise DatasetError(f"could not read {name} file(s) {where}: {e}") from e


def load_rows(
    name: str, source: str | Path, split: str, *, required: Sequence[str],
    any_of: Sequence[Sequence[str]] = (), id_column: str = "id", patterns: Sequence[str] = (),
    schema: str = "", hub_config: str | None = None,
) -> tuple[Rows, Path | None]:
    """Rows of `split` from a folder, a file, or a hub name, and the folder that relative image
    paths are resolved against. Image columns stay encoded (`decode_image` per item)."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = find_split_files(name, path, split, patterns)
        rows, where = _read_files(name, files, split, id_column), str(path)
        base = path if files[0].suffix == ".parquet" else files[0].parent
    elif path.is_file():
        rows, base, where = _read_files(name, [path], split, id_column), path.parent, str(path)
    elif isinstance(source, str) and HUB_NAME.match(source) and not path.suffix:
        rows, base, where = _load_hub(name, source, split, hub_config), None, f"hub {source!r}"
    else:
        hint = f"a hub name such as {schema!r}, " if schema else ""
        raise DatasetError(
            f"{name} data not found: {path.resolve()} does not exist (pass a folder or file in "
            f"the published layout, {hint}or None for the bundled fixture)."
        )
    if isinstance(rows, list):  # JSON records may each lack a different field
        for i, rec in enumerate(rows):
            label = f"{where} (record {i}, {id_column} {rec.get(id_column)!r})"
            check_columns(name, list(rec), required, label, any_of, schema)
    else:
        check_columns(name, list(rows.column_names), required, where, any_of, schema)
    return _keep_images_encoded(rows), base


def _load_hub(name: str, source: str, split: str, config: str | None) -> Rows:
    with quiet_datasets() as datasets:
        try:
            args = (source,) if config is None else (source, config)
            return datasets.load_dataset(*args, split=split)
        except Exception as e:
            raise DatasetError(
                f"{source!r} is not a local path and loading {name} split {split!r} from the "
                f"Hugging Face Hub failed ({type(e).__name__}: {e}). Download it and pass "
                "the folder as data_dir."
            ) from e


def hub_file(repo: str, paths: Sequence[str], label: str) -> str:
    """Download the first of `paths` that exists in hub dataset `repo` (cached by
    huggingface_hub) and return its local path."""
    import huggingface_hub

    errors = []
    for path in paths:
        try:
            return huggingface_hub.hf_hub_download(repo, path, repo_type="dataset")
        except Exception as e:  # EntryNotFoundError, offline errors, ...
            errors.append(f"{path}: {type(e).__name__}")
    raise DatasetError(f"{label}: image not downloadable from hub {repo!r} ({'; '.join(errors)})")


def _keep_images_encoded(rows: Rows) -> Rows:
    if isinstance(rows, list):
        return rows
    import datasets

    for col, feature in rows.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            rows = rows.cast_column(col, datasets.Image(decode=False))
    return rows


def _image_bytes(value: Any, base: Path | None, label: str) -> tuple[bytes, str]:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), "bytes"
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return bytes(value["bytes"]), "bytes"
        value = value.get("path")
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{label} has no image")
    text = value.strip()
    if len(text) > 256 and _BASE64.match(text[:4096]):
        try:
            return base64.b64decode(text, validate=False), "base64"
        except (binascii.Error, ValueError) as e:
            raise DatasetError(f"{label}: image is not valid base64: {e}") from e
    path = Path(text)
    path = path if path.is_absolute() or base is None else base / path
    return _read_image_file(path, label), str(path)


def _read_image_file(path: Path, label: str) -> bytes:
    """The bytes of a regular file of at most MAX_IMAGE_BYTES, else a `DatasetError`: a device
    such as /dev/zero or a fifo would read (or wait) forever, a directory holds no image."""
    where = f"{label}: image file {str(path)[:200]}"
    try:  # O_NONBLOCK: opening a fifo does not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            regular, data = stat.S_ISREG(os.fstat(fd).st_mode), b""
            if regular:
                with open(fd, "rb", closefd=False) as f:
                    data = f.read(MAX_IMAGE_BYTES + 1)
        finally:
            os.close(fd)
    except (OSError, ValueError) as e:  # missing, a name too long, a NUL byte...
        raise DatasetError(f"{where} not readable: {e}") from e
    if not regular:
        raise DatasetError(f"{where} is not a regular file (a device, fifo or directory)")
    if len(data) > MAX_IMAGE_BYTES:
        raise DatasetError(f"{where} is larger than {MAX_IMAGE_BYTES} bytes")
    return data


def decode_image(value: Any, base: Path | None, label: str) -> Image.Image:
    """Any published image encoding as an RGB image (transparency onto white). `label` names
    the item in the error, e.g. "MathVista pid '7'"."""
    if isinstance(value, Image.Image):
        img = value
    else:
        data, where = _image_bytes(value, base, label)
        try:
            with Image.open(io.BytesIO(data)) as opened:
                opened.load()
                img = opened.copy()
        except Exception as e:  # PIL raises many types (OSError, SyntaxError, ...) on bad data
            raise DatasetError(f"{label}: cannot decode image ({where}): {e}") from e
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.new("RGB", rgba.size, (255, 255, 255))
        img.paste(rgba, mask=rgba.getchannel("A"))
    return img if img.mode == "RGB" else img.convert("RGB")
