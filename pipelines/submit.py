"""`make submit`: create a run of the compiled pipeline on a Kubeflow cluster, with typed parameters.

Goes through kfp.Client rather than `kfp run create`: the 2.13 CLI sends every parameter as a string, which KFP backends
before 2.16 reject for int/float parameters (kubeflow/pipelines #11607). The endpoint comes from --endpoint, KFP_ENDPOINT
or KF_PIPELINES_ENDPOINT, a bearer token from KFP_TOKEN; parameters are `key=value` with values parsed as JSON when they parse (numbers, booleans,
objects), else kept as strings, and checked against the compiled pipeline's declared parameter types.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml

KFP_TYPES = {
    "NUMBER_INTEGER": int,
    "NUMBER_DOUBLE": float,
    "STRING": str,
    "BOOLEAN": bool,
    "STRUCT": dict,
    "LIST": list,
}


def declared_parameters(pipeline_file: str) -> dict[str, str]:
    with open(pipeline_file) as f:
        spec = next(yaml.safe_load_all(f))  # the pipeline spec; a second document holds the Kubernetes platform spec
    parameters = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {name: definition["parameterType"] for name, definition in parameters.items()}


def parse_arguments(pairs: list[str], declared: dict[str, str]) -> dict:
    """`key=value` strings -> typed values; unknown keys and values of the wrong type are errors naming them."""
    arguments = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"parameter {pair!r} is not key=value")
        if key not in declared:
            raise ValueError(f"unknown parameter {key!r}; the pipeline declares {sorted(declared)}")
        expected = KFP_TYPES[declared[key]]
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is str:
            value = raw
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"parameter {key}={raw!r} must be {declared[key]}")
        arguments[key] = value
    return arguments


def endpoint_from_env(explicit: str | None) -> str:
    endpoint = explicit or os.environ.get("KFP_ENDPOINT") or os.environ.get("KF_PIPELINES_ENDPOINT")
    if not endpoint:
        raise ValueError(
            "no KFP endpoint: pass --endpoint or set KFP_ENDPOINT (e.g. http://localhost:8080 after "
            "`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`)"
        )
    return endpoint


def submit(
    pipeline_file: str,
    arguments: dict,
    *,
    endpoint: str,
    experiment: str,
    run_name: str | None,
    namespace: str | None = None,
) -> str:
    import kfp

    # multi-user Kubeflow wants a bearer token from outside the cluster (docs/cluster.md: kubectl create token)
    client = kfp.Client(host=endpoint, namespace=namespace or "kubeflow", existing_token=os.environ.get("KFP_TOKEN"))
    result = client.create_run_from_pipeline_package(
        pipeline_file, arguments=arguments, run_name=run_name, experiment_name=experiment, namespace=namespace
    )
    return result.run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parameters", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--pipeline", default="build/waveforms_pipeline.yaml")
    parser.add_argument("--endpoint")
    parser.add_argument("--experiment", default="waveforms")
    parser.add_argument("--run-name")
    parser.add_argument("--namespace", help="Kubeflow profile namespace (multi-user clusters)")
    args = parser.parse_args(argv)
    try:
        if not os.path.exists(args.pipeline):
            raise ValueError(f"{args.pipeline} does not exist: run `make compile` first")
        arguments = parse_arguments(args.parameters, declared_parameters(args.pipeline))
        endpoint = endpoint_from_env(args.endpoint)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    run_id = submit(
        args.pipeline,
        arguments,
        endpoint=endpoint,
        experiment=args.experiment,
        run_name=args.run_name,
        namespace=args.namespace,
    )
    print(f"created run {run_id} on {endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
