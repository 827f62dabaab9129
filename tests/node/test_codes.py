"""One table of error codes: every code the scheduler can return has its HTTP and gRPC status."""

from __future__ import annotations

import subprocess
import sys

from grpclib.const import Status

from taskd.node.api.codes import ErrorCode, grpc_status, http_status
from taskd.queue.commands import RejectCode


def test_every_scheduler_rejection_has_a_row() -> None:
    for code in RejectCode:
        assert code.value in ErrorCode.__members__.values()
        assert 400 <= http_status(code.value) < 500


def test_statuses_of_the_contract() -> None:
    # design.md §3: 400 invalid, 404 unknown id, 409 illegal transition, 413 too large,
    # 429 full, 503 no leader / unavailable
    expected = {
        "invalid": (400, Status.INVALID_ARGUMENT),
        "not_found": (404, Status.NOT_FOUND),
        "conflict": (409, Status.FAILED_PRECONDITION),
        "too_large": (413, Status.INVALID_ARGUMENT),
        "queue_full": (429, Status.RESOURCE_EXHAUSTED),
        "node_full": (429, Status.RESOURCE_EXHAUSTED),
        "not_leader": (503, Status.UNAVAILABLE),
        "unavailable": (503, Status.UNAVAILABLE),
    }
    for code, (http, grpc) in expected.items():
        assert (http_status(code), grpc_status(code)) == (http, grpc), code


def test_an_unknown_code_is_a_client_error_not_a_crash() -> None:
    assert http_status("no such code") == 400
    assert grpc_status("no such code") == Status.INVALID_ARGUMENT


def test_importing_the_api_does_not_patch_betterproto2() -> None:
    # the serializer speed-up is the server's choice (installed when it starts), never a side
    # effect of importing the gRPC layer or the generated code
    script = (
        "import betterproto2\n"
        "from taskd.node import speedups\n"
        "import taskd.node.api.grpc.handlers\n"
        "assert betterproto2.Message._get_field_default is speedups.ORIGINAL\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
