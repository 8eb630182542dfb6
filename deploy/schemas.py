"""Request and response bodies of the API."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ['ErrorDetail', 'Health', 'Ready', 'PixelsRequest', 'Prediction', 'PredictResponse', 'ModelRow', 'Models']


class ErrorDetail(BaseModel):
    "Every 4xx and 503 answer: what went wrong and what to send instead."
    detail: str


class Health(BaseModel):
    status: Literal['ok'] = 'ok'


class Ready(BaseModel):
    ready: bool = True
    model_version: int = Field(description='the registered model version being served')


class PixelsRequest(BaseModel):
    "Digits as UCI 8x8 counts (0..16): one image or a list of images."
    pixels: list[Any] = Field(
        description='one image (64 counts, or 8 rows of 8 counts) or a list of images (n x 64 or n x 8 x 8); '
                    'counts are 0..16, the number of inked pixels in each 4x4 block of a 32x32 bitmap',
        examples=[[[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
                   [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
                   [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]])


class Prediction(BaseModel):
    label: int = Field(ge=0, le=9, description='the most probable digit')
    probabilities: list[float] = Field(description='one per digit 0..9; they sum to 1')


class PredictResponse(BaseModel):
    model_version: int
    predictions: list[Prediction] = Field(description='one per input image, in the order sent')


class ModelRow(BaseModel):
    version: int
    registered: str
    accuracy: float
    macro_f1: float
    accepted: bool = Field(description='passed the acceptance criteria in settings.ini')
    dataset_version: str
    aliases: list[str]
    serving: bool = Field(description='this version is the one /predict uses')


class Models(BaseModel):
    serving: int | None = Field(description='the version /predict uses; null when no model is loaded')
    reload_error: str | None = Field(None, description='why the version the served reference now names was refused (the old one keeps serving)')
    aliases: dict[str, int]
    versions: list[ModelRow]
