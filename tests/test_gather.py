"""/predict's gathering of small batches that arrive in the same turn of the event loop into one model call
(deploy.serving.Gather): each request gets exactly its own rows, whatever else shared the call.

The model is the fixture's real one (onnxruntime); the wrapper only counts its calls."""

import asyncio
import re

import httpx
import numpy as np
import pytest
from conftest import serving_env, uvicorn_server

from deploy.serving import Gather, ServedModel
from mlproj.data import load_split
from mlproj.predict import Predictor
from mlproj.registry import open_registry
from mlproj.store import Store


class Counted(Predictor):
    "The registered model, counting its calls and the images of each."

    def __init__(self, onnx):
        super().__init__(onnx)
        self.calls = []

    def probabilities(self, x):
        self.calls.append(len(x))
        return super().probabilities(x)


@pytest.fixture(scope='module')
def served(trained):
    "A ServedModel on the fixture's version 1, counting its calls; and the test split's first 64 images as counts."
    settings, _, evaluation = trained
    model = ServedModel(1, Counted(open_registry(settings).load(1).onnx), {})
    X, y = load_split(Store(settings.store_url), evaluation['dataset_version'], 'test')
    return model, X[:64].astype(np.float32)


def alone(model, x):
    return Predictor.probabilities(model.predictor, x)  # the same model, one call for these rows only


def run(*coroutines):
    "Start the coroutines in this order in one turn of a new event loop; their results (or exceptions), in order."

    async def main():
        return await asyncio.gather(*coroutines, return_exceptions=True)

    return asyncio.run(main())


def test_requests_of_one_turn_share_one_model_call_and_each_gets_its_own_rows(served):
    model, X = served
    parts = [X[0:1], X[1:4], X[4:5], X[5:13], X[13:14]]  # 1, 3, 1, 8 and 1 images
    model.predictor.calls.clear()
    shared = []
    gather = Gather(on_call=shared.append)
    answers = run(*(gather.probabilities(model, x) for x in parts))
    assert model.predictor.calls == [14] and shared == [5]  # one call on every image of the turn, for 5 requests
    for x, probs in zip(parts, answers):
        assert probs.shape == (len(x), 10)
        np.testing.assert_allclose(probs, alone(model, x), atol=1e-6)


def test_past_max_images_or_on_another_model_a_request_starts_a_group_of_its_own(served):
    model, X = served
    other = ServedModel(2, model.predictor, {})  # what a hot reload swaps in: another ServedModel
    model.predictor.calls.clear()
    gather = Gather(max_images=10)
    parts = [(model, X[0:6]), (model, X[6:10]), (model, X[10:13]), (model, X[13:14]), (other, X[14:15])]
    answers = run(*(gather.probabilities(m, x) for m, x in parts))
    # 6 + 4 fill the first group; 3 more would pass 10: they open the group the next joins (1); `other`'s is its own
    assert sorted(model.predictor.calls) == [1, 4, 10]
    for (_, x), probs in zip(parts, answers):
        np.testing.assert_allclose(probs, alone(model, x), atol=1e-6)


def test_a_failing_model_call_fails_every_request_that_shared_it_and_nothing_hangs(served):
    model, X = served
    gather = Gather()
    bad = np.zeros((1, 7, 7), np.float32)  # not 8x8: the concatenation refuses it (the route never lets one through)
    answers = run(
        gather.probabilities(model, X[:2]), gather.probabilities(model, bad), gather.probabilities(model, X[2:3])
    )
    assert all(isinstance(a, ValueError) for a in answers), answers
    assert run(gather.probabilities(model, X[:1]))[0].shape == (1, 10)


def test_the_first_request_cancelled_while_it_waits_still_answers_the_others(served):
    model, X = served
    gather = Gather()

    async def main():
        first = asyncio.create_task(gather.probabilities(model, X[:1]))
        others = [asyncio.create_task(gather.probabilities(model, X[i : i + 1])) for i in (1, 2)]
        await asyncio.sleep(0)  # the first yields, the others join it
        first.cancel()
        return await asyncio.gather(first, *others, return_exceptions=True)

    got = asyncio.run(main())
    assert isinstance(got[0], asyncio.CancelledError)
    for i, probs in zip((1, 2), got[1:]):
        np.testing.assert_allclose(probs, alone(model, X[i : i + 1]), atol=1e-6)


def test_a_request_alone_stops_yielding_after_a_few_quiet_turns_and_probes_again(served):
    model, X = served
    gather = Gather(probe=4, every=16)

    async def yields():  # whether a lone request gave up its turn: a task started after it runs before it ends
        order = []

        async def other():
            order.append('other')

        async def one():
            await gather.probabilities(model, X[:1])
            order.append('one')

        await asyncio.gather(one(), other())
        return order[0] == 'other'

    async def main():
        return [await yields() for _ in range(40)]

    got = asyncio.run(main())
    assert got[:4] == [True] * 4  # probing
    assert got[4:] == [(i + 5) % 16 == 0 for i in range(36)]  # then one turn in 16
    three = lambda: run(*(gather.probabilities(model, X[i : i + 1]) for i in range(3)))  # three requests in one turn
    for _ in range(16):  # company again: within 16 turns a probe finds it...
        model.predictor.calls.clear()
        three()
        if model.predictor.calls == [3]:
            break
    else:
        pytest.fail('no turn in 16 gathered the three requests')
    model.predictor.calls.clear()
    three()
    assert model.predictor.calls == [3]  # ...and from then on every turn waits for it


def test_concurrent_clients_over_http_each_get_the_answer_for_their_own_images(trained, served, tmp_path):
    "32 clients at once, each sending other images, over and over: every answer is that client's, in its order."
    model, X = served
    env = serving_env(trained[0].store_url, tmp_path / 'reports', MLPROJ_MODEL='1')
    want = alone(model, X)

    async def client(http, k):
        for r in range(6):
            i = (k * 7 + r * 3) % 60
            n = 1 + (k + r) % 3
            resp = await http.post('/predict', json={'pixels': X[i : i + n].astype(int).reshape(n, 64).tolist()})
            assert resp.status_code == 200, resp.text
            got = np.array([p['probabilities'] for p in resp.json()['predictions']])
            np.testing.assert_allclose(got, want[i : i + n], atol=1e-6)

    async def main(url):
        async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=32), timeout=30) as http:
            await asyncio.gather(*(client(http, k) for k in range(32)))

    with uvicorn_server(env) as srv:
        asyncio.run(main(srv.url))
        metrics = httpx.get(f'{srv.url}/metrics').text
    # every request was answered by exactly one model call: the calls' requests add up to the 192 sent
    count = lambda name: float(re.search(rf'^{name} (\S+)$', metrics, re.MULTILINE).group(1))
    assert count('mlproj_model_call_requests_sum') == 32 * 6
    assert 1 <= count('mlproj_model_call_requests_count') <= 32 * 6
