"""Request contents to model inputs, as the project's task declares them, with messages saying what to fix.

`reader_for(task)` gives the parsers of a task's input: for an image task JSON arrays of its shape, `.npy`, raw uint8
bytes and image files; for a row task JSON rows and CSV with a header. The digits task keeps its own, faster readers
(JSON counts read from their text, `counts_json`): every form is checked the same way, once, on the whole array with
numpy (numbers, never booleans, counts 0..16, one of the four shapes): the checks cost microseconds, not one Python call
per image."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson

from mlproj.preprocess import MAX_COUNT, InputError, decode_image, to_model_input
from mlproj.settings import Serving

__all__ = [
    'Reader',
    'TooManyImages',
    'Unreadable',
    'counts_json',
    'images_batch',
    'json_batch',
    'loads_json',
    'npy_batch',
    'pixels_batch',
    'raw_batch',
    'reader_for',
    'too_many',
]

_FORMS = 'one image as 64 counts or as 8 rows of 8 counts, or a list of such images (n x 64 or n x 8 x 8)'


class TooManyImages(InputError):
    "More images in one request than settings.ini [serving] max_batch allows."


class Unreadable(ValueError):
    "A body that cannot be parsed at all in its declared format (answered with 400, like invalid JSON)."


def too_many(n: int | str, max_batch: int, what: str = 'images') -> TooManyImages:
    return TooManyImages(f'{n} {what} in one request; at most {max_batch} are allowed: send them in several requests')


def _kind(x) -> str:
    if x is None:
        return 'null'
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, str):
        return f'a string ({x[:20]!r})'
    if isinstance(x, dict):
        return 'an object'
    if isinstance(x, list):
        return 'a list'
    return f'the number {x}'


def _desc(shape: tuple) -> str:
    return 'a number' if not shape else f'a list of {"x".join(map(str, shape))}'


def _shape(x, where: str, depth: int = 0) -> tuple:
    "The shape of nested lists of numbers, or an InputError naming the first thing that is not one."
    if isinstance(x, list):
        if depth == 3:
            raise InputError(f'{where} is nested too deeply: send {_FORMS}')
        if not x:
            raise InputError(f'{where} is an empty list: send {_FORMS}')
        shapes = [_shape(v, f'{where}[{i}]', depth + 1) for i, v in enumerate(x)]
        for i, s in enumerate(shapes):
            if s != shapes[0]:
                raise InputError(f'{where} is ragged: {where}[0] is {_desc(shapes[0])} but {where}[{i}] is {_desc(s)}')
        return (len(x), *shapes[0])
    if depth == 0:
        raise InputError(f'pixels must be a list, not {_kind(x)}: send {_FORMS}')
    if type(x) not in (int, float):
        raise InputError(f'{where} is {_kind(x)}; pixel values must be numbers, counts from 0 to 16')
    return ()


def loads_json(body: bytes):
    "A JSON body parsed by orjson (5x the standard library's speed); what orjson refuses goes to the standard library, so NaN, Infinity and numbers beyond float range get the answers they always got. ValueError or RecursionError: not JSON."
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _as_array(pixels, may_hold_booleans: bool = True) -> np.ndarray:
    "A numeric array of `pixels` if it is regular nested lists of numbers; else an InputError saying where it is not."
    if isinstance(pixels, list):
        try:
            a = np.array(pixels)  # the fast path: a regular array of numbers
        except (ValueError, TypeError, OverflowError):
            a = None  # ragged
        if a is not None and a.dtype.kind in 'iuf' and a.size:
            if not may_hold_booleans:
                return a
            _shape(pixels, 'pixels')  # numpy reads true as 1: walk the lists to refuse booleans wherever they are
            return a
    _shape(pixels, 'pixels')  # raises, saying what is wrong, for everything but integers beyond float range
    try:
        return np.array(pixels, dtype=np.float64)
    except OverflowError:
        raise InputError('pixels holds a number far outside 0..16; pixel values are counts from 0 to 16') from None


# Besides its key, the usual body holds only these bytes: unsigned integers in lists. One pass of bytes.translate (C,
# a fraction of a microsecond) proves it, and numpy then builds int16 straight away, without inferring a type.
_COUNTS_TEXT, _COUNTS_ONLY = b'0123456789,[] \t\n\r', b'{"pixels":}'


def pixels_batch(
    body,  # a parsed JSON body: {"pixels": ...}
    max_batch: int,  # the most images accepted
    raw: bytes
    | None = None,  # the JSON text it was parsed from: lets the usual body (unsigned integers) skip type inference and the walk for booleans
) -> np.ndarray:
    "(n, 8, 8) float32 model inputs for a JSON body holding one image or a list of images of UCI counts."
    if not isinstance(body, dict):
        raise InputError(f'the JSON body must be an object {{"pixels": ...}}, not {_kind(body)}')
    if 'pixels' not in body:
        raise InputError(f'the JSON body has no "pixels" field: send {{"pixels": ...}} with {_FORMS}')
    if len(body) > 1:
        extra = sorted(set(body) - {'pixels'})
        raise InputError(
            f'unexpected field{"s" * (len(extra) > 1)} {", ".join(map(repr, extra))}: the body takes only "pixels"'
        )
    rest = None if raw is None else raw.translate(None, _COUNTS_TEXT)
    if rest == _COUNTS_ONLY:  # no sign, fraction, exponent, string, boolean or null anywhere
        try:
            a = np.array(body['pixels'], dtype=np.int16)  # faster to build than uint8 for large batches
        except (ValueError, OverflowError):
            a = None  # ragged, or a number beyond int16: the general path says which
        if a is not None and a.ndim and a.size:
            return _batch(a.view(np.uint16), max_batch, 'pixels')  # no sign: one reduction
    # true and false are the only JSON tokens with a t or an f (outside strings, which the walk refuses anyway)
    return _batch(_as_array(body['pixels'], rest is None or b't' in rest or b'f' in rest), max_batch, 'pixels')


_PREFIX, _WS, _DIGITS = re.compile(rb'[ \t\n\r]*\{[ \t\n\r]*"pixels"[ \t\n\r]*:'), b' \t\n\r', b'0123456789'
_ROW, _IMAGE = (
    b'[' + b',' * 63 + b']',
    b'[' + b','.join([b'[,,,,,,,]'] * 8) + b']',
)  # 64 counts, 8 x 8: numbers left out


def counts_json(
    raw: bytes,  # a JSON body's text
) -> np.ndarray | None:
    """The pixels of the usual body, `{"pixels": ...}` holding unsigned integers of at most two digits in one of the four
    shapes, read straight from the text by numpy (18 ns a count at 256 images, against 43 ns for orjson and numpy's list
    conversion); None for any other body, valid JSON or not: the general path then reads it and says what is wrong.
    An array it returns holds exactly the counts orjson would read (as uint8, up to 99): `json_batch` then refuses one
    over 16 in `pixels_batch`'s words."""
    if raw.translate(None, _COUNTS_TEXT) != _COUNTS_ONLY:
        return None
    m, end = _PREFIX.match(raw), len(raw.rstrip(_WS))
    if m is None or raw[end - 1 : end] != b'}':
        return None
    mid = raw[m.end() : end - 1]  # the pixels: digits, brackets, commas and whitespace
    b = np.frombuffer(mid, np.uint8)
    if not len(b) or ((b[:-1] - np.uint8(48) < 10) & (b[1:] <= 32)).any():
        return None  # whitespace after a digit
    text = mid.translate(None, _WS)  # no whitespace left inside a number: drop it all
    c = np.frombuffer(text + b'\0', np.uint8)  # a last byte that is nothing of the above
    d = c - np.uint8(48)  # a digit's value; brackets, commas and the last byte wrap round to 10 or more
    isd = d < 10
    last = isd[:-1] & ~isd[1:]  # each number's last digit
    opens, closes = (c == 91) | (c == 44), (c == 44) | (c == 93)  # [ or , before a number; , or ] after it
    pair = isd[:-1] & isd[1:]
    if (
        (last & ~closes[1:]).any()
        or (opens[:-1] & closes[1:]).any()
        or (pair[:-1] & isd[2:]).any()
        or (pair & (d[:-1] == 0)).any()
    ):
        return (
            None  # a number not followed by , or ]; no number between [ or , and , or ]; three digits; a leading zero
        )
    at = np.flatnonzero(last)
    k, extra = divmod(len(at), 64)
    if extra or not k:
        return None
    # the brackets and commas must be those of one of the shapes; then, with no place for a number left empty, each of
    # the 64 k places holds one number and there are no others
    skeleton = text.translate(None, _DIGITS)
    if skeleton == b'[' + b','.join([_ROW] * k) + b']':
        shape = (k, 64)
    elif skeleton == b'[' + b','.join([_IMAGE] * k) + b']':
        shape = (k, 8, 8)
    elif skeleton == _ROW:
        shape = (64,)
    elif skeleton == _IMAGE:
        shape = (8, 8)
    else:
        return None
    tens = at - 1  # the digit before a number's last, if it has two (the text starts with a bracket: at >= 1)
    return (d[at] + np.where(isd[tens], d[tens] * np.uint8(10), np.uint8(0))).reshape(shape)


FAST_JSON_BYTES = 4096  # below this (16 images), orjson and numpy's list conversion are as fast


def json_batch(
    raw: bytes,  # a JSON body's text
    max_batch: int,  # the most images accepted
) -> np.ndarray:
    "(n, 8, 8) float32 model inputs for a JSON body: the usual large body read from its text by `counts_json`, any other parsed by orjson and checked by `pixels_batch`. Unreadable: not JSON; InputError: JSON, but not pixels."
    a = counts_json(raw) if len(raw) > FAST_JSON_BYTES else None
    if a is not None:
        return _batch(a, max_batch, 'pixels')
    try:
        body = loads_json(raw)
    except (ValueError, RecursionError) as e:
        raise Unreadable(f'the body is not valid JSON ({e}): send {{"pixels": ...}} with {_FORMS}') from None
    return pixels_batch(body, max_batch, raw)


def _batch(a: np.ndarray, max_batch: int, what: str) -> np.ndarray:
    "(n, 8, 8) float32 counts from a numeric array of one of the four shapes; an InputError saying what is wrong."
    return _counts(a, what if _check_shape(a.shape, max_batch, what) else None, what)


def _check_shape(shape: tuple, max_batch: int, what: str) -> bool:
    "True for one image (64 or 8x8), False for a list of at most `max_batch`; else an InputError (413 past max_batch)."
    one = shape in ((64,), (8, 8))
    if (
        not (one or (len(shape) == 2 and shape[1] == 64) or (len(shape) == 3 and shape[1:] == (8, 8)))
        or min(shape, default=0) < 1
    ):
        raise InputError(f'{what} has shape {"x".join(map(str, shape)) or "of a single number"}: send {_FORMS}')
    if not one and shape[0] > max_batch:
        raise too_many(shape[0], max_batch)
    return one


def _counts(a: np.ndarray, one: str | None, what: str) -> np.ndarray:
    "`a` as contiguous float32 (n, 8, 8) if every value is a count 0..16 as the model gets it (float32); else to_model_input's message for the first image that is not."
    if a.dtype.kind == 'u':
        ok = a.max() <= MAX_COUNT
    elif a.dtype.kind == 'i':  # one reduction: read as unsigned, a negative count is larger than any count
        ok = a.view(a.dtype.str.replace('i', 'u')).max() <= MAX_COUNT
    else:
        ok = a.min() >= 0 and a.max() <= MAX_COUNT  # two reductions: NaN fails both comparisons, infinities one
    if not ok:  # rare: check image by image as float32, in to_model_input's words (training's check)
        with np.errstate(over='ignore', invalid='ignore'):
            a = a.astype(np.float32)  # a huge float becomes inf: refused
        for i, img in enumerate(a.reshape(-1, 8, 8)):
            try:
                to_model_input(img)
            except InputError as e:
                raise InputError(f'{one or f"{what}[{i}]"}: {e}') from None
    return np.ascontiguousarray(a, dtype=np.float32).reshape(-1, 8, 8)  # in range: the cast cannot overflow


def _npy_header(body: bytes, send: str) -> tuple:
    "(file positioned after the header, shape, fortran order, dtype) of a .npy file; Unreadable when it is not one."
    f = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f'.npy format version {version[0]}.{version[1]} is not read here')
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f, max_header_size=1024)
    except (ValueError, SyntaxError) as e:
        raise Unreadable(f'the body is not a .npy file ({e}): {send}') from None
    return f, shape, fortran, dtype


NPY_SEND = 'send the output of numpy.save of an array of counts 0..16 (64, 8x8, n x 64 or n x 8 x 8; any integer or float dtype)'


def npy_batch(
    body: bytes,  # a .npy file, as numpy.save writes it
    max_batch: int,  # the most images accepted
) -> np.ndarray:
    "(n, 8, 8) float32 model inputs from a .npy file; the header is read and checked before any array is made."
    f, shape, fortran, dtype = _npy_header(body, NPY_SEND)
    if dtype.kind not in 'iuf':
        raise InputError(
            f'the array holds {dtype.name} values; pixel values must be numbers (an integer or float dtype), counts from 0 to 16'
        )
    one = _check_shape(shape, max_batch, 'the array')  # before any array is made: a header may claim any size
    n = int(np.prod(shape))
    if len(body) - f.tell() != n * dtype.itemsize:
        raise Unreadable(
            f'the .npy header says {n * dtype.itemsize} bytes of data but {len(body) - f.tell()} follow it: {NPY_SEND}'
        )
    a = np.frombuffer(body, dtype, n, f.tell()).reshape(shape, order='F' if fortran else 'C')
    return _counts(a, 'the array' if one else None, 'the array')


RAW_SEND = 'send 64 bytes per image, one count 0..16 a byte, row by row (numpy: counts.astype("uint8").tobytes())'


def raw_batch(
    body: bytes,  # 64 bytes per image: unsigned counts 0..16, row by row
    max_batch: int,  # the most images accepted
) -> np.ndarray:
    "(n, 8, 8) float32 model inputs from raw uint8 counts, no header: the fastest form to send and to read."
    if len(body) % 64:
        raise InputError(f'the body holds {len(body)} bytes, not a multiple of 64: {RAW_SEND}')
    n = len(body) // 64
    if n > max_batch:
        raise too_many(n, max_batch)
    return _counts(np.frombuffer(body, np.uint8).reshape(n, 8, 8), None, 'images')


def _pixels(data: bytes) -> int:
    "Width x height an image file declares in its header (0 when it is not one: decoding then says why)."
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size[0] * im.size[1]
    except Exception:
        return 0


def each_file(
    files: list[tuple[str, bytes]],  # (name, encoded image) per uploaded file, in order
    serving: Serving,  # its max_request_pixels
    read,  # (data, where) -> one model input; an InputError's message is prefixed with `where` (file's place and name)
) -> np.ndarray:
    "The model inputs of uploaded image files, stacked: the request's pixel budget first, then each file read by `read`."
    total = sum(_pixels(data) for _, data in files)
    if total > serving.max_request_pixels:
        raise TooManyImages(
            f'the images hold {total} pixels in all; at most {serving.max_request_pixels} are allowed '
            'in one request: send them in several requests, or smaller'
        )
    out = []
    for i, (name, data) in enumerate(files, 1):
        where = f'file {i} ({name!r})'
        if not data:
            raise InputError(f'{where} is empty')
        try:
            out.append(read(data, where))
        except InputError as e:
            raise e if str(e).startswith(where) else InputError(f'{where}: {e}') from None
    return np.stack(out)


def images_batch(
    files: list[tuple[str, bytes]],  # (name, encoded image) per uploaded file, in order
    serving: Serving,  # its max_image_side, max_image_pixels and max_request_pixels
) -> np.ndarray:
    "(n, 8, 8) float32 model inputs for image files (PNG, JPEG, TIFF, anything Pillow reads), either polarity."
    side, pixels = serving.max_image_side, serving.max_image_pixels
    return each_file(files, serving, lambda data, _: to_model_input(decode_image(data, side, pixels), side))


# ---------------------------------------------------------------- readers made from a task's input spec
# Each reader takes the task's name first (`functools.partial`), not the task: a large JSON body is read in another
# process, which loads the task by its name.

NPY, RAW, CSV = 'application/x-npy', 'application/octet-stream', 'text/csv'
DIGITS_SEND = (
    'send JSON (Content-Type: application/json) as {"pixels": ...}, '
    "image files as multipart/form-data under the field 'files', "
    f'an array as a .npy file ({NPY}) or raw uint8 counts, 64 bytes an image ({RAW})'
)


def _task(name: str):
    from mlproj.task import load_task

    return load_task(name)  # cached: one import a process


def image_forms(inp) -> str:
    "The JSON and array forms an image task takes, in words."
    s, flat = 'x'.join(map(str, inp.shape)), int(np.prod(inp.shape))
    return f'one image as {flat} values or as an array of {s}, or a list of such images (n x {flat} or n x {s})'


def _values(inp) -> str:
    return f'numbers from {inp.low:g} to {inp.high:g}'


def _walk(x, where: str, depth: int, inp) -> tuple:
    "The shape of nested lists of numbers, or an InputError naming the first thing that is not one."
    if isinstance(x, list):
        if depth > len(inp.shape):
            raise InputError(f'{where} is nested too deeply: send {image_forms(inp)}')
        if not x:
            raise InputError(f'{where} is an empty list: send {image_forms(inp)}')
        shapes = [_walk(v, f'{where}[{i}]', depth + 1, inp) for i, v in enumerate(x)]
        for i, s in enumerate(shapes):
            if s != shapes[0]:
                raise InputError(f'{where} is ragged: {where}[0] is {_desc(shapes[0])} but {where}[{i}] is {_desc(s)}')
        return (len(x), *shapes[0])
    if depth == 0:
        raise InputError(f'pixels must be a list, not {_kind(x)}: send {image_forms(inp)}')
    if type(x) not in (int, float):
        raise InputError(f'{where} is {_kind(x)}; pixel values must be {_values(inp)}')
    return ()


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
    if not isinstance(body, dict):
        raise InputError(f'the JSON body must be an object {{"pixels": ...}}, not {_kind(body)}')
    if 'pixels' not in body:
        raise InputError(f'the JSON body has no "pixels" field: send {{"pixels": ...}} with {image_forms(inp)}')
    if len(body) > 1:
        extra = sorted(set(body) - {'pixels'})
        raise InputError(
            f'unexpected field{"s" * (len(extra) > 1)} {", ".join(map(repr, extra))}: the body takes only "pixels"'
        )
    _walk(body['pixels'], 'pixels', 0, inp)  # numbers in regular nested lists, never booleans, or which one is not
    try:
        a = np.array(body['pixels'], dtype=np.float64)
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
    f, shape, fortran, dtype = _npy_header(body, send)
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
        raise InputError(f'{where} is {_kind(row)}, not an object {{feature: value}}: {features_in_words(inp)}')
    unknown = [k for k in row if k not in inp.features]
    if unknown:
        raise InputError(
            f'{where} has unknown feature{"s" * (len(unknown) > 1)} {", ".join(map(repr, unknown[:5]))}: '
            f'{features_in_words(inp)}'
        )
    for k, v in row.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, str, type(None))):
            raise InputError(f'{where}: {k} is {_kind(v)}; a value is a number or a "number unit" string')
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


def _prepare_rows(task, rows: list, max_batch: int, where) -> np.ndarray:
    if len(rows) > max_batch:
        raise too_many(len(rows), max_batch, 'rows')
    out = np.empty((len(rows), *task.input.shape), np.float32)
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
            raise InputError(f'"rows" must be a list of objects, not {_kind(rows)}: send {row_forms(task.input)}')
    elif isinstance(body, dict):
        return _prepare_rows(task, [body], max_batch, lambda i: 'the row')
    elif isinstance(body, list):
        rows, where = body, '[{}]'.format
    else:
        raise InputError(
            f'the JSON body must be an object or a list of objects, not {_kind(body)}: send {row_forms(task.input)}'
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


def is_digits(task) -> bool:
    "Whether `task` reads its inputs as the digits task does (8x8 counts, its `prepare`): then its fast readers serve it."
    from mlproj.digits import Digits
    from mlproj.task import ImageInput

    return task.input == ImageInput(8, 8, 1, 0.0, 16.0) and type(task).prepare is Digits.prepare


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
    if is_digits(task):
        r = Reader(
            'image', 'image', json_batch, {NPY.encode(): npy_batch, RAW.encode(): raw_batch}, images_batch, DIGITS_SEND
        )
    elif task.input.kind == 'image':
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
    _readers[name] = r
    return r
