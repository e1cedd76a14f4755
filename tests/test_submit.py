"""`make submit`'s path: typed parameters reach the KFP API as numbers (kubeflow/pipelines #11607), against a loopback
server that speaks the v2beta1 endpoints kfp.Client uses."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines.compile import compile_pipeline
from pipelines.submit import declared_parameters, main, parse_arguments
from pipelines.waveforms_pipeline import PipelineOptions


class FakeKfpApi(BaseHTTPRequestHandler):
    requests: list = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.requests.append(("GET", self.path, None))
        self._reply({"experiments": []} if "/experiments" in self.path else {})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.requests.append(("POST", self.path, body))
        if self.path.endswith("/experiments"):
            self._reply({"experiment_id": "exp-1", "display_name": body["display_name"]})
        else:
            self._reply({"run_id": "run-1", "display_name": body.get("display_name", "")})

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_api():
    FakeKfpApi.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKfpApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", FakeKfpApi.requests
    server.shutdown()


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("p") / "pipeline.yaml"
    compile_pipeline(PipelineOptions(image="registry.example/waveforms:0.1.0-abc"), str(path))
    return str(path)


def test_submit_sends_typed_parameters(kfp_api, pipeline_file, capsys):
    endpoint, requests = kfp_api
    assert (
        main(
            [
                "--pipeline",
                pipeline_file,
                "--endpoint",
                endpoint,
                "report_clips=4",
                "source=synth",
                'source_options={"count": 12}',
            ]
        )
        == 0
    )
    assert "created run run-1" in capsys.readouterr().out
    run = next(body for method, path, body in requests if method == "POST" and path.endswith("/runs"))
    parameters = run["runtime_config"]["parameters"]
    assert parameters["report_clips"] == 4 and isinstance(parameters["report_clips"], int)
    assert parameters["source"] == "synth"
    assert parameters["source_options"] == {"count": 12}
    assert run["experiment_id"] == "exp-1"
    # with Kubernetes settings (Secrets, GPU selectors) the client sends the pipeline and platform specs together
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "waveforms"
    assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]


def test_bad_parameters_are_refused_before_any_request(kfp_api, pipeline_file, capsys):
    endpoint, requests = kfp_api
    assert main(["--pipeline", pipeline_file, "--endpoint", endpoint, "report_clips=four"]) == 2
    assert "report_clips='four' must be NUMBER_INTEGER" in capsys.readouterr().err
    assert main(["--pipeline", pipeline_file, "--endpoint", endpoint, "no_such=1"]) == 2
    assert requests == []


def test_missing_endpoint_is_explained(pipeline_file, monkeypatch, capsys):
    monkeypatch.delenv("KFP_ENDPOINT", raising=False)
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    assert main(["--pipeline", pipeline_file]) == 2
    assert "KFP_ENDPOINT" in capsys.readouterr().err


def test_parse_arguments_follows_declared_types(pipeline_file):
    declared = declared_parameters(pipeline_file)
    assert declared["report_clips"] == "NUMBER_INTEGER" and declared["source_options"] == "STRUCT"
    assert parse_arguments(["source=123"], declared) == {"source": "123"}  # strings stay strings
