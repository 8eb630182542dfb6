"""Jobs through the queue: submit (or rerun), look up, list, cancel. Every endpoint needs a bearer token."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

import mlproj.sweeps  # noqa: F401 (reruns live with sweeps, 43, which patch JobQueue.rerun_submit in)
from mlproj.jobs import check_name
from mlproj.queue import STATES, JobConflict, JobQueue
from mlproj.redis_server import QueueUnavailable

from ..auth import CallerDep, OperateDep, SubmitDep
from ..schemas import ErrorDetail

router = APIRouter(tags=['jobs'])


class JobRequest(BaseModel):
    "A job to queue: a job kind with its parameters, or a finished run to run again."

    model_config = ConfigDict(extra='forbid')
    job: str | None = Field(
        None, description='a notebook of nbs/jobs/ (train, evaluate, ...) or noop', examples=['train']
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="the job's parameters, as its parameters cell declares them",
        examples=[{'max_epochs': 10, 'lr': 0.003}],
    )
    rerun: str | None = Field(
        None,
        description='a finished run id (a name, never a path): run it again with its recorded parameters',
        examples=['20261122-103000-train-1a2b3c'],
    )

    @field_validator('job')
    @classmethod
    def job_is_a_name(cls, v):
        return v if v is None else check_name(v, 'job name')

    @field_validator('rerun')
    @classmethod
    def run_id_is_a_name(cls, v):
        return v if v is None else check_name(v)  # '../../x' would reach outside reports/runs

    @model_validator(mode='after')
    def one_of(self):
        if (self.job is None) == (self.rerun is None):
            raise ValueError('give either "job" (with "parameters") or "rerun"')
        if self.rerun is not None and self.parameters:
            raise ValueError('"rerun" takes no "parameters": the run recorded them')
        return self


class Job(BaseModel):
    "A job's record: kept until it is deleted."

    id: str
    kind: str
    state: Literal['queued', 'running', 'done', 'failed', 'cancelled']
    parameters: dict[str, Any]
    attempts: int = Field(
        description='deliveries that started running it (retries and redeliveries after a dead worker)'
    )
    failures: int = 0
    requeued: int = Field(
        0, description='times it was sent again because its broker message was lost (see [queue] recover_after)'
    )
    submitted: str
    started: str | None = None
    finished: str | None = None
    run_id: str | None = Field(None, description="the latest attempt's run under reports/runs/")
    runs: list[str] = Field(default_factory=list, description='the run of every attempt')
    abandoned: str | None = Field(None, description="a killed attempt's run, marked abandoned")
    result: dict[str, Any] | None = None
    error: str | None = None
    sweep: str | None = None
    rerun_of: str | None = None
    notes: list[str] = Field(default_factory=list)


# 401/403 come from document_refusals (deploy/schemas.py), like every route behind a token; the 503 here says more
ERRORS = {503: {'model': ErrorDetail, 'description': 'no token configured, or the queue cannot be reached'}}


async def get_queue(request: Request) -> JobQueue:
    "The app's connection to the queue, made on first use; 503 when there is no broker."
    jq = getattr(request.app.state, 'queue', None)
    if jq is None:
        try:
            jq = request.app.state.queue = await run_in_threadpool(JobQueue, request.app.state.settings)
        except QueueUnavailable as e:
            raise HTTPException(503, str(e)) from e
    return jq


QueueDep = Annotated[JobQueue, Depends(get_queue)]


def _job(rec: dict) -> Job:
    return Job(**{k: v for k, v in rec.items() if v != '' or k in ('parameters',)})


async def _call(fn, *args):
    try:
        return await run_in_threadpool(fn, *args)
    except KeyError as e:
        raise HTTPException(404, e.args[0]) from e
    except JobConflict as e:
        raise HTTPException(409, str(e)) from e
    except (ValueError, FileNotFoundError) as e:
        raise HTTPException(422, str(e)) from e
    except QueueUnavailable as e:
        raise HTTPException(503, str(e)) from e


@router.post(
    '/jobs',
    status_code=202,
    responses={**ERRORS, 422: {'model': ErrorDetail, 'description': 'an unknown job or parameter, a bad value'}},
)
async def submit(body: JobRequest, response: Response, caller: SubmitDep, jq: QueueDep) -> Job:
    "Queue a job (parameters checked before anything is queued); its URL is in Location."
    rec = await (_call(jq.rerun_submit, body.rerun) if body.rerun else _call(jq.submit, body.job, body.parameters))
    response.headers['Location'] = f'/jobs/{rec["id"]}'
    return _job(rec)


@router.get('/jobs/{job_id}', responses={**ERRORS, 404: {'model': ErrorDetail, 'description': 'no such job'}})
async def show(job_id: str, caller: CallerDep, jq: QueueDep) -> Job:
    "A job's state, attempts, times, run and result."
    rec = await _call(jq.get, job_id)
    if rec is None:
        raise HTTPException(404, f'no job {job_id}')
    return _job(rec)


@router.get('/jobs', responses=ERRORS)
async def listing(
    caller: CallerDep,
    jq: QueueDep,
    state: Annotated[Literal[STATES] | None, Query(description='only jobs in this state')] = None,  # type: ignore[valid-type]
    kind: Annotated[str | None, Query(max_length=100, description='only jobs of this kind')] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Job]:
    "Jobs, newest first."
    return [_job(r) for r in await _call(lambda: jq.jobs(state=state, kind=kind, limit=limit))]


@router.delete(
    '/jobs/{job_id}',
    responses={
        **ERRORS,
        404: {'model': ErrorDetail, 'description': 'no such job'},
        409: {'model': ErrorDetail, 'description': 'the job is running'},
    },
)
async def cancel(job_id: str, caller: OperateDep, jq: QueueDep) -> Job:
    "Cancel a queued job (a finished one is answered as it is; a running one gets 409)."
    return _job(await _call(jq.cancel, job_id))
