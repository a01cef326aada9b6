#!/usr/bin/env python3
"""A label's script: submit an album to a lacquer coordinator, follow it to
its end, and fetch its report — with grpcio, from lacquer's own protos.

    python3 examples/python/lacquer_client.py album.yaml \\
        --coordinator 127.0.0.1:7700 --source s3://label-a/albums/corpus/ \\
        --token "$LACQUER_TOKEN" --report report.json

A coordinator behind TLS: --coordinator https://host:7700 (the system's
roots), plus --ca-cert ca.pem for a private certificate authority.

The stubs are generated from proto/lacquer/v1/lacquer.proto when the script
starts (grpcio-tools), so they always match the coordinator's contract.
Needs: pip install grpcio grpcio-tools (scripts/setup does it in
target/python).
"""
import argparse
import importlib
import os
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_ROOT = os.path.join(REPO, "proto")


def load_stubs():
    """Generates the lacquer.v1 modules into a temporary folder and imports them."""
    out = tempfile.mkdtemp(prefix="lacquer-stubs-")
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        os.path.join(PROTO_ROOT, "lacquer", "v1", "lacquer.proto"),
    ])
    if status != 0:
        sys.exit(f"cannot generate the gRPC stubs from {PROTO_ROOT}")
    for package in ("lacquer", os.path.join("lacquer", "v1")):
        open(os.path.join(out, package, "__init__.py"), "a").close()
    sys.path.insert(0, out)
    return (importlib.import_module("lacquer.v1.lacquer_pb2"),
            importlib.import_module("lacquer.v1.lacquer_pb2_grpc"))


def open_channel(coordinator, ca_cert):
    """Plain text for host:port or http://, TLS for https:// (or a CA given)."""
    address = coordinator.removeprefix("http://").removeprefix("https://")
    if coordinator.startswith("https://") or ca_cert:
        roots = None
        if ca_cert:
            with open(ca_cert, "rb") as f:
                roots = f.read()
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=roots))
    return grpc.insecure_channel(address)


# Codes that mean the connection broke (the coordinator restarting), not
# that the request was wrong: the watch is opened again.
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
             grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
RECONNECT_FOR_S = 600


def follow(albums, pb, job, metadata):
    """Follows a job to its end, watching again with backoff when the
    connection breaks (for up to RECONNECT_FOR_S); returns its last state."""
    last, lost_since, wait = job, None, 0.2
    while True:
        try:
            for event in albums.Watch(pb.WatchRequest(job_id=job.id), metadata=metadata):
                lost_since, wait = None, 0.2
                if event.job == last:
                    continue
                last = event.job
                state = pb.JobState.Name(last.state).removeprefix("JOB_STATE_").lower()
                print(f"{last.id} {state} {last.tasks_done}/{last.tasks_total}", flush=True)
            reason = "the watch ended early"
        except grpc.RpcError as error:
            if error.code() not in TRANSIENT:
                raise
            reason = f"{error.code().name}: {error.details()}"
        if last.state != pb.JOB_STATE_RUNNING:
            return last
        if lost_since is None:
            lost_since = time.monotonic()
            print(f"lost the coordinator ({reason}); reconnecting", file=sys.stderr, flush=True)
        elif time.monotonic() - lost_since > RECONNECT_FOR_S:
            sys.exit(f"the coordinator has been unreachable for {RECONNECT_FOR_S} s ({reason}); "
                     f"{job.id} may still be running")
        time.sleep(wait)
        wait = min(wait * 2, 5.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="the album manifest (YAML)")
    parser.add_argument("--coordinator", default=os.environ.get("LACQUER_COORDINATOR", "127.0.0.1:7700"))
    parser.add_argument("--token", default=os.environ.get("LACQUER_TOKEN"))
    parser.add_argument("--ca-cert", default=os.environ.get("LACQUER_CA_CERT"),
                        help="PEM certificate(s) to trust for an https:// coordinator")
    parser.add_argument("--source", default="", help="where the manifest's paths resolve (s3://bucket/prefix/)")
    parser.add_argument("--output", default="", help="where the deliverables go (s3://bucket/prefix/)")
    parser.add_argument("--report", help="write the finished job's report.json here")
    args = parser.parse_args()

    pb, rpc = load_stubs()
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    with open_channel(args.coordinator, args.ca_cert) as channel:
        albums = rpc.AlbumsStub(channel)
        with open(args.manifest, encoding="utf-8") as f:
            request = pb.SubmitRequest(manifest_yaml=f.read(), source=args.source, output=args.output)
        try:
            job = albums.Submit(request, metadata=metadata).job
        except grpc.RpcError as error:
            sys.exit(f"{args.manifest}: {error.code().name}: {error.details()}")
        print(f"submitted {job.id} ({job.title}), {job.tasks_total} tasks", flush=True)

        try:
            last = follow(albums, pb, job, metadata)
        except grpc.RpcError as error:
            sys.exit(f"{job.id}: {error.code().name}: {error.details()}")
        if last.state != pb.JOB_STATE_SUCCEEDED:
            sys.exit(f"{last.id} ended {pb.JobState.Name(last.state)}: {last.error}")

        report = albums.Report(pb.ReportRequest(job_id=job.id), metadata=metadata).report_json
        if args.report:
            with open(args.report, "w", encoding="utf-8") as f:
                f.write(report)
            print(f"report written to {args.report}")
        else:
            print(report)


if __name__ == "__main__":
    main()
