"""The peer a user would pick: LitServe serving the same ONNX graph with the same JSON in and out.

python bench/litserve_app.py MODEL.onnx PORT
"""

import sys

import litserve as ls
import numpy as np


class DigitsAPI(ls.LitAPI):
    def setup(self, device):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        self.session = ort.InferenceSession(sys.argv[1], opts, providers=['CPUExecutionProvider'])
        self.input = self.session.get_inputs()[0].name

    def decode_request(self, request):
        return np.asarray(request['pixels'], dtype=np.float32).reshape(-1, 8, 8)

    def predict(self, x):
        return self.session.run(None, {self.input: x})[0]

    def encode_response(self, probs):
        return dict(
            model_version=1,
            predictions=[
                dict(label=label, probabilities=p) for label, p in zip(probs.argmax(1).tolist(), probs.tolist())
            ],
        )


if __name__ == '__main__':
    server = ls.LitServer(DigitsAPI(), accelerator='cpu', devices=1, workers_per_device=1)
    server.run(
        host='127.0.0.1', port=int(sys.argv[2]), num_api_servers=1, log_level='warning', generate_client_file=False
    )
