"""Request contents to model inputs, as the project's task declares them, with messages saying what to fix.

`reader_for(task)` gives the parsers of a task's input: for an image task JSON arrays of its shape, `.npy`, raw uint8
bytes and image files; for a row task JSON rows and CSV with a header. A task may hand over its own readers for some
or all of its forms (`Task.readers`: the digits read the usual large JSON body of counts from its text); the server
uses them where the task has them and the ones made here otherwise. Every check runs once on the whole array with
numpy, and a row batch is prepared in one call of the task's `prepare_rows`: the checks cost microseconds, not one
Python call per input, except for a request that fails, which is then read input by input to name the one at fault."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlproj.bodies import each_file, kind_of, loads_json, nested_shape, npy_header, pixels_field
from mlproj.settings import Serving
from mlproj.task import InputError, TooManyInputs, Unreadable, too_many

__all__ = [
    'Reader',
    'TooManyInputs',
    'Unreadable',
    'loads_json',
    'reader_for',
    'too_many',
]

# ---------------------------------------------------------------- readers made from a task's input spec
# Each reader takes the task's name first (`functools.partial`), not the task: a large JSON body is read in another
# process, which loads the task by its name.

NPY, RAW, CSV = 'application/x-npy', 'application/octet-stream', 'text/csv'


def _task(name: str):
    from mlproj.task import load_task

    return load_task(name)  # cached: one import a process


def image_forms(inp) -> str:
    "The JSON and array forms an image task takes, in words."
    s, flat = 'x'.join(map(str, inp.shape)), int(np.prod(inp.shape))
    return f'one image as {flat} values or as an array of {s}, or a list of such images (n x {flat} or n x {s})'


def _values(inp) -> str:
    return f'numbers from {inp.low:g} to {inp.high:g}'


def _walk(x, where: str, inp) -> tuple:
    "The shape of nested lists of numbers, or an InputError naming the first thing that is not one."
    return nested_shape(x, where, len(inp.shape), image_forms(inp), _values(inp))


def _image_shape(shape: tuple, inp, max_batch: int, what: str) -> bool:
    "True for one image (its shape, or flat), False for a list of at most `max_batch`; else an InputError (413 past it)."
    ones = (tuple(inp.shape), (int(np.prod(inp.shape)),))
    one = shape in ones
    if not (one or (len(shape) > 1 and shape[1:] in ones)) or min(shape, default=0) < 1:
        raise InputError(
            f'{what} has shape {"x".join(map(str, shape)) or "of a single number"}: send {image_forms(inp)}'
        )
    if not one and shape[0] > max_batch:
        raise too_many(shape[0], max_batch)
    return one


def _image_range(a: np.ndarray, inp, one: str | None, what: str) -> np.ndarray:
    "`a` as float32 (n, *inp.shape) if every value is within the input's range; else which image and value is not."
    with np.errstate(over='ignore', invalid='ignore'):
        x = np.ascontiguousarray(a, dtype=np.float32)
        ok = (x >= inp.low) & (x <= inp.high)  # NaN fails both
    if not ok.all():
        flat = ok.reshape(1 if one else len(x), -1)
        i = int(np.flatnonzero(~flat.all(1))[0])
        v = x.reshape(flat.shape)[i][~flat[i]][0]
        raise InputError(
            f'{one or f"{what}[{i}]"}: the value {v:g} is outside the image range; values must be {_values(inp)}'
        )
    return x.reshape(-1, *inp.shape)


def image_json(name: str, raw: bytes, max_batch: int) -> np.ndarray:
    '(n, *shape) float32 inputs of image task `name` from a JSON body {"pixels": ...}.'
    inp = _task(name).input
    try:
        body = loads_json(raw)
    except (ValueError, RecursionError) as e:
        raise Unreadable(f'the body is not valid JSON ({e}): send {{"pixels": ...}} with {image_forms(inp)}') from None
    pixels = pixels_field(body, image_forms(inp))
    _walk(pixels, 'pixels', inp)  # numbers in regular nested lists, never booleans, or which one is not
    try:
        a = np.array(pixels, dtype=np.float64)
    except OverflowError:
        raise InputError(f'pixels holds a number far outside the range: values must be {_values(inp)}') from None
    one = _image_shape(a.shape, inp, max_batch, 'pixels')
    return _image_range(a, inp, 'pixels' if one else None, 'pixels')


def image_npy(name: str, body: bytes, max_batch: int) -> np.ndarray:
    "(n, *shape) float32 inputs of image task `name` from a .npy file; the header is checked before any array is made."
    inp = _task(name).input
    send = (
        f'send the output of numpy.save of an array of {_values(inp)} ({image_forms(inp)}; any integer or float dtype)'
    )
    f, shape, fortran, dtype = npy_header(body, send)
    if dtype.kind not in 'iuf':
        raise InputError(f'the array holds {dtype.name} values; pixel values must be {_values(inp)}')
    one = _image_shape(shape, inp, max_batch, 'the array')
    n = int(np.prod(shape))
    if len(body) - f.tell() != n * dtype.itemsize:
        raise Unreadable(
            f'the .npy header says {n * dtype.itemsize} bytes of data but {len(body) - f.tell()} follow it: {send}'
        )
    a = np.frombuffer(body, dtype, n, f.tell()).reshape(shape, order='F' if fortran else 'C')
    return _image_range(a, inp, 'the array' if one else None, 'the array')


def image_raw(name: str, body: bytes, max_batch: int) -> np.ndarray:
    "(n, *shape) float32 inputs of image task `name` from raw uint8 values, one byte a value, image after image."
    inp = _task(name).input
    size = int(np.prod(inp.shape))
    if len(body) % size:
        raise InputError(
            f'the body holds {len(body)} bytes, not a multiple of {size}: send {size} bytes per image, one value a byte '
            f'({"x".join(map(str, inp.shape))}, C order; numpy: values.astype("uint8").tobytes())'
        )
    n = len(body) // size
    if n > max_batch:
        raise too_many(n, max_batch)
    return _image_range(np.frombuffer(body, np.uint8).reshape(n, *inp.shape), inp, None, 'images')


def image_files(name: str, files: list[tuple[str, bytes]], serving: Serving) -> np.ndarray:
    "(n, *shape) float32 inputs of image task `name` for image files, each read by the task's `prepare`."
    from PIL import Image

    task = _task(name)

    def read(data, where):
        try:
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
        except Exception:
            raise InputError('not an image file that can be read (send PNG or JPEG)') from None
        if max(w, h) > serving.max_image_side:
            raise InputError(f'image is {w}x{h}; the largest side allowed is {serving.max_image_side}')
        if w * h > serving.max_image_pixels:
            raise InputError(f'image is {w}x{h} = {w * h} pixels; at most {serving.max_image_pixels} are allowed')
        try:
            x = np.asarray(task.prepare(data), dtype=np.float32)
        except ValueError as e:  # InputError included
            raise InputError(str(e)) from None
        return _image_range(x, task.input, where, where).reshape(task.input.shape)

    return each_file(files, serving, read)


def features_in_words(inp) -> str:
    "'expected 3 features: a (cm), b, c': the features a row holds, in the model's order, with their units."
    units = inp.units or ('',) * len(inp.features)
    names = [f'{f} ({u})' if u else f for f, u in zip(inp.features, units)]
    return f'expected {len(names)} features: {", ".join(names)}'


def row_forms(inp) -> str:
    return (
        'one JSON object {feature: value}, {"rows": [objects]} or a list of objects, each value a number or a '
        f'"number unit" string ({features_in_words(inp)}), or CSV ({CSV}) with a header line of feature names'
    )


def prepare_row(task, row, where: str) -> np.ndarray:
    "The model's input for one row (a mapping from the task's feature names to values), by the task's `prepare`."
    inp = task.input
    if not isinstance(row, dict):
        raise InputError(f'{where} is {kind_of(row)}, not an object {{feature: value}}: {features_in_words(inp)}')
    unknown = [k for k in row if k not in inp.features]
    if unknown:
        raise InputError(
            f'{where} has unknown feature{"s" * (len(unknown) > 1)} {", ".join(map(repr, unknown[:5]))}: '
            f'{features_in_words(inp)}'
        )
    for k, v in row.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, str, type(None))):
            raise InputError(f'{where}: {k} is {kind_of(v)}; a value is a number or a "number unit" string')
    row = {k: v for k, v in row.items() if v is not None}  # null: missing, as the task's `prepare` takes it
    try:
        x = np.asarray(task.prepare(row), dtype=np.float32)
    except (ValueError, TypeError, KeyError) as e:  # InputError included
        missing = [f for f in inp.features if f not in row]
        why = f'no value for {e.args[0]}' if isinstance(e, KeyError) and e.args else str(e)
        more = f'; missing {", ".join(missing)}' if missing else ''
        raise InputError(f'{where}: {why}{more} ({features_in_words(inp)})') from None
    if x.shape != tuple(inp.shape):
        raise RuntimeError(f'task {task.name}: `prepare` gave shape {x.shape} for a row, not {tuple(inp.shape)}')
    if not np.isfinite(x).all():
        bad = inp.features[int(np.flatnonzero(~np.isfinite(x))[0])]
        raise InputError(f'{where}: {bad} is not a finite number; {features_in_words(inp)}')
    return x


_NUMBERS = frozenset((int, float))  # a value's exact type: never bool (a subclass of int)


def _prepare_rows(task, rows: list, max_batch: int, where) -> np.ndarray:
    "(n, *shape) inputs of `rows`: the usual batch in one call of the task's `prepare_rows`, else row by row (`prepare_row` names the first row at fault)."
    if len(rows) > max_batch:
        raise too_many(len(rows), max_batch, 'rows')
    inp = task.input
    # the usual batch: objects holding numbers under the task's own feature names (three C-speed passes prove it)
    if (
        all(type(r) is dict for r in rows)
        and set().union(*rows) <= frozenset(inp.features)
        and {type(v) for r in rows for v in r.values()} <= _NUMBERS
    ):
        try:
            x = np.asarray(task.prepare_rows(rows), dtype=np.float32)
        except (ValueError, TypeError, KeyError):  # InputError included: the row by row reading says which row
            x = None
        if x is not None and x.shape == (len(rows), *inp.shape) and np.isfinite(x).all():
            return x
    out = np.empty((len(rows), *inp.shape), np.float32)
    for i, row in enumerate(rows):
        out[i] = prepare_row(task, row, where(i))
    return out


def rows_json(name: str, raw: bytes, max_batch: int) -> np.ndarray:
    '(n, features) float32 inputs of row task `name` from JSON: one object, {"rows": [objects]} or a list of objects.'
    task = _task(name)
    try:
        body = loads_json(raw)
    except (ValueError, RecursionError) as e:
        raise Unreadable(f'the body is not valid JSON ({e}): send {row_forms(task.input)}') from None
    if isinstance(body, dict) and set(body) == {'rows'}:
        rows, where = body['rows'], 'rows[{}]'.format
        if not isinstance(rows, list):
            raise InputError(f'"rows" must be a list of objects, not {kind_of(rows)}: send {row_forms(task.input)}')
    elif isinstance(body, dict):
        return _prepare_rows(task, [body], max_batch, lambda i: 'the row')
    elif isinstance(body, list):
        rows, where = body, '[{}]'.format
    else:
        raise InputError(
            f'the JSON body must be an object or a list of objects, not {kind_of(body)}: send {row_forms(task.input)}'
        )
    if not rows:
        raise InputError(f'no rows: send {row_forms(task.input)}')
    return _prepare_rows(task, rows, max_batch, where)


def _cell(text: str):
    'A CSV cell as a number when it is one, else the text as sent ("12.5 %": the task\'s `prepare` reads units).'
    try:
        return float(text)
    except ValueError:
        return text


def rows_csv(name: str, body: bytes, max_batch: int) -> np.ndarray:
    "(n, features) float32 inputs of row task `name` from CSV: a header line of feature names, then a row a line."
    import csv

    task = _task(name)
    send = f'send CSV: a header line naming the columns ({features_in_words(task.input)}), then one row a line'
    try:
        text = body.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        raise Unreadable(f'the body is not UTF-8 text ({e}): {send}') from None
    lines = csv.reader(io.StringIO(text, newline=''))
    try:
        numbered = [(lines.line_num, cells) for cells in lines if any(c.strip() for c in cells)]
    except csv.Error as e:
        raise Unreadable(f'the body cannot be read as CSV ({e}): {send}') from None
    if not numbered:
        raise InputError(f'the CSV body holds no header line: {send}')
    (_, header), data = numbered[0], numbered[1:]
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in task.input.features]
    if unknown:
        raise InputError(
            f'the CSV header names unknown column{"s" * (len(unknown) > 1)} {", ".join(map(repr, unknown[:5]))} '
            f'(the first line is the header): {features_in_words(task.input)}'
        )
    if len(set(header)) < len(header):
        raise InputError(f'the CSV header names a column twice: {", ".join(header)}')
    if not data:
        raise InputError(f'the CSV body holds a header but no rows: {send}')
    if len(data) > max_batch:
        raise too_many(len(data), max_batch, 'rows')
    rows = []
    for num, cells in data:
        if len(cells) != len(header):
            raise InputError(f'line {num} has {len(cells)} cells but the header names {len(header)} columns')
        rows.append({h: _cell(c.strip()) for h, c in zip(header, cells) if c.strip()})
    return _prepare_rows(task, rows, max_batch, lambda i: f'line {data[i][0]}')


@dataclass(frozen=True)
class Reader:
    "How /predict reads a task's inputs: a parser per form of body, and how to send them (the end of every 4xx about the form)."

    kind: str  # 'image' or 'row'
    item: str  # what one input is called in messages: 'image' or 'row'
    json: Callable  # (JSON body, max_batch) -> (n, *input shape) float32; importable by name (large bodies: another process)
    binary: dict  # other media type (bytes, lower case) -> its parser, called as `json` is
    files: Callable | None  # ([(file name, bytes)], Serving) -> inputs: multipart image uploads; None: none taken
    send: str
    request_body: dict | None = None  # the task's own OpenAPI request body of /predict; None: made from its input spec


_readers: dict = {}


def reader_for(
    task,
    ref: str
    | None = None,  # the name `load_task` knows it by (settings.ini [task] name: a module path for a task of yours); default: its name
) -> Reader:
    "The readers of `task`'s inputs (one per task, kept)."
    from functools import partial

    name = ref or task.name
    if name in _readers:
        return _readers[name]
    if task.input.kind == 'image':
        size = int(np.prod(task.input.shape))
        r = Reader(
            'image',
            'image',
            partial(image_json, name),
            {NPY.encode(): partial(image_npy, name), RAW.encode(): partial(image_raw, name)},
            partial(image_files, name),
            'send JSON (Content-Type: application/json) as {"pixels": ...} with '
            f"{image_forms(task.input)}, image files as multipart/form-data under the field 'files', "
            f'an array as a .npy file ({NPY}) or raw uint8 values, {size} bytes an image ({RAW})',
        )
    else:
        r = Reader(
            'row',
            'row',
            partial(rows_json, name),
            {CSV.encode(): partial(rows_csv, name)},
            None,
            f'send {row_forms(task.input)}',
        )
    _readers[name] = r = _own(task.readers(), r)
    return r


def _own(own, r: Reader) -> Reader:
    "`r` with the task's own readers (`Task.readers`) in place of the server's, form by form, where the task has them."
    if own is None:
        return r
    bodies = {t.lower(): f for t, f in own.bodies.items()}
    json = bodies.pop('application/json', r.json)
    binary = {**r.binary, **{t.encode(): f for t, f in bodies.items()}}
    return Reader(r.kind, r.item, json, binary, own.files or r.files, own.send or r.send, own.request_body)
