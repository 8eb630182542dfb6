"""The API as `mlproj serve` builds it, plus `POST /noop`: the same JSON body read by the same decoder and answered with the
same shape by the same encoder, no checks and no model.

    uvicorn serve_app:app --factory --app-dir bench   (settings from MLPROJ_* variables, as `mlproj serve` passes them)
"""

from __future__ import annotations

import numpy as np
from fastapi import Request

from deploy.app import app_from_env

try:  # the decoder and encoder /predict uses
    from deploy.inputs import loads_json
    from deploy.routes.predict import Answer
except ImportError:  # an older tree (make bench --baseline): its /predict used the standard library's json both ways
    import json

    from fastapi.responses import JSONResponse

    loads_json = json.loads

    def Answer(version, probs):
        return JSONResponse(
            dict(
                model_version=version,
                predictions=[dict(label=int(np.argmax(p)), probabilities=p) for p in probs.tolist()],
            )
        )


# ten probabilities as a float32 softmax prints them: as long to encode as the model's
PROBS = np.random.default_rng(0).dirichlet(np.full(10, 0.3)).astype(np.float32)


def _count(pixels) -> int:
    "Images in a JSON pixels field: 1 for 64 counts or 8x8, else the length of the list."
    if not pixels or not isinstance(pixels[0], list):
        return 1
    return 1 if len(pixels) == 8 and not isinstance(pixels[0][0], list) and len(pixels[0]) == 8 else len(pixels)


def app():
    "The served app with the no-op twin of /predict beside it."
    api = app_from_env()

    task = getattr(api.state, 'task', None)
    classes = tuple(task.classes) if task else tuple(map(str, range(10)))
    probs = PROBS[: len(classes)] / PROBS[: len(classes)].sum()

    @api.post('/noop', include_in_schema=False)
    async def noop(request: Request):
        body = loads_json(await request.body())
        n = len(body['rows']) if 'rows' in body else _count(body['pixels'])  # a row task's rows, or images
        if task is None:  # an older tree: its Answer knows ten classes only
            return Answer(0, np.broadcast_to(PROBS, (n, 10)))
        return Answer(0, np.broadcast_to(probs, (n, len(classes))), None, classes)

    return api
