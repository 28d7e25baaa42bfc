"""The upstream connection pool against real servers on loopback, on asyncio's and uvloop's loops.

Every test starts an ``OipTestServer`` in its own event loop and counts, on the server side,
what the pool did: connections opened, requests received, requests in flight at once.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oip_servers import Model, OipTestServer, free_port, settle

from rollwise.backends.upstream import UpstreamPool, UpstreamResponse
from rollwise.errors import BackendError, BackendTimeout

Run = Callable[[Coroutine[Any, Any, None]], None]

INFER = "/v2/models/iris/infer"


def body_for(request_id: str, rows: int = 1) -> bytes:
    data = [1.0, 2.0, 3.0, 4.0] * rows
    return orjson.dumps(
        {
            "id": request_id,
            "inputs": [{"name": "features", "shape": [rows, 4], "datatype": "FP64", "data": data}],
        }
    )


def answer_id(response: UpstreamResponse) -> str:
    assert response.status == 200, response
    document = orjson.loads(response.body)
    assert document["outputs"][0]["data"][0] == 10.0
    return str(document["id"])


async def infer(pool: UpstreamPool, request_id: str) -> str:
    return answer_id(await pool.request("POST", INFER, body_for(request_id)))


def test_sequential_requests_share_one_keep_alive_connection(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer() as server:
            pool = UpstreamPool(server.origin)
            for i in range(20):
                assert await infer(pool, f"r{i}") == f"r{i}"
            assert server.accepted == 1
            assert server.requests == 20
            assert pool.open_connections == 1
            await pool.close()

    run(main())


def test_concurrent_requests_never_open_more_than_max_connections(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(delay_s=0.005) as server:
            pool = UpstreamPool(server.origin, max_connections=4)
            ids = [f"r{i}" for i in range(60)]
            answers = await asyncio.gather(*(infer(pool, i) for i in ids))
            assert answers == ids
            assert server.accepted == 4
            assert server.max_in_flight == 4
            assert pool.open_connections == 4
            # A second wave reuses the same sockets.
            await asyncio.gather(*(infer(pool, i) for i in ids))
            assert server.accepted == 4
            await pool.close()

    run(main())


def test_connection_close_answers_are_never_reused(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(connection_close=True) as server:
            pool = UpstreamPool(server.origin)
            for i in range(5):
                assert await infer(pool, f"r{i}") == f"r{i}"
            assert server.accepted == 5
            assert server.requests == 5
            await server.wait_for_connections(0)
            await settle(lambda: pool.open_connections == 0)
            assert pool.open_connections == 0
            await pool.close()

    run(main())


def test_connection_close_is_honoured_even_if_the_server_keeps_the_socket(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(connection_close=True, hold_open=True) as server:
            pool = UpstreamPool(server.origin)
            for i in range(3):
                assert await infer(pool, f"r{i}") == f"r{i}"
            assert server.accepted == 3
            await server.wait_for_connections(0)
            assert server.open_connections == 0
            await pool.close()

    run(main())


def test_connections_closed_by_the_server_while_idle_are_replaced(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(idle_close_s=0.05) as server:
            pool = UpstreamPool(server.origin)
            assert await infer(pool, "first") == "first"
            await server.wait_for_connections(0)
            await settle(lambda: pool.open_connections == 0)
            assert pool.open_connections == 0
            assert await infer(pool, "second") == "second"
            assert server.accepted == 2
            assert server.requests == 2
            await pool.close()

    run(main())


def test_a_server_that_closes_after_every_n_requests_is_followed(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(close_after=3) as server:
            pool = UpstreamPool(server.origin)
            for i in range(10):
                assert await infer(pool, f"r{i}") == f"r{i}"
            assert server.accepted == 4
            assert server.answered == 10
            await pool.close()

    run(main())


def test_a_request_on_a_reused_connection_that_died_unanswered_is_sent_again(run: Run) -> None:
    async def main() -> None:
        # Each connection answers one request, then drops the next one it receives.
        async with OipTestServer(drop_after=1) as server:
            pool = UpstreamPool(server.origin)
            for i in range(5):
                assert await infer(pool, f"r{i}") == f"r{i}"
            assert server.answered == 5
            assert server.requests == 9
            assert server.accepted == 5
            await pool.close()

    run(main())


def test_the_resend_goes_to_a_new_connection_not_another_idle_one(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(drop_after=1, delay_s=0.01) as server:
            pool = UpstreamPool(server.origin)
            # Three idle connections, each of which will drop the next request it gets.
            await asyncio.gather(*(infer(pool, f"r{i}") for i in range(3)))
            assert server.accepted == 3
            assert await infer(pool, "again") == "again"
            assert server.accepted == 4
            assert server.requests == 5
            await pool.close()

    run(main())


def test_a_request_is_sent_again_at_most_once(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(drop_after=1, close_after=None) as server:
            pool = UpstreamPool(server.origin)
            assert await infer(pool, "ok") == "ok"
            # From now on every connection drops everything after its first answer, and the
            # fresh connection for the resend has not answered yet, so make it drop too.
            server.drop_after = 0
            with pytest.raises(BackendError, match="closed the connection without answering"):
                await infer(pool, "dropped")
            assert server.requests == 3
            assert server.accepted == 2
            await pool.close()

    run(main())


def test_a_fresh_connection_that_dies_unanswered_is_not_retried(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(drop_after=0) as server:
            pool = UpstreamPool(server.origin)
            with pytest.raises(BackendError, match="without answering"):
                await infer(pool, "dropped")
            assert server.requests == 1
            await pool.close()

    run(main())


def test_nothing_is_resent_after_part_of_a_response_arrived(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(partial_after=1) as server:
            pool = UpstreamPool(server.origin)
            assert await infer(pool, "whole") == "whole"
            with pytest.raises(BackendError, match="in the middle of a response"):
                await infer(pool, "half")
            assert server.requests == 2
            await pool.close()

    run(main())


def test_a_slow_server_raises_backend_timeout(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(delay_s=5.0) as server:
            pool = UpstreamPool(server.origin, timeout_s=0.5)
            with pytest.raises(BackendTimeout, match=r"did not answer within 0\.5 s"):
                await infer(pool, "slow")
            await server.wait_for_connections(0)
            await settle(lambda: pool.open_connections == 0)
            assert pool.open_connections == 0
            await pool.close()

    run(main())


def test_a_late_answer_never_reaches_the_next_request(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(delays=[0.3]) as server:
            pool = UpstreamPool(server.origin)
            with pytest.raises(BackendTimeout):
                await pool.request("POST", INFER, body_for("late"), timeout_s=0.05)
            # Give the late answer time to be written; the timed-out socket is gone.
            await asyncio.sleep(0.4)
            assert await infer(pool, "next") == "next"
            assert server.accepted == 2
            await pool.close()

    run(main())


def test_a_cancelled_request_does_not_leave_its_answer_on_the_connection(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(delays=[5.0]) as server:
            pool = UpstreamPool(server.origin)
            task = asyncio.ensure_future(infer(pool, "cancelled"))
            await settle(lambda: server.requests > 0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The answer may still come, so the socket it would come on is closed.
            await server.wait_for_connections(0)
            assert server.open_connections == 0
            assert pool.open_connections == 0
            assert await infer(pool, "next") == "next"
            assert server.accepted == 2
            await pool.close()

    run(main())


def test_waiting_for_a_free_connection_counts_against_the_timeout(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(delay_s=3.0) as server:
            pool = UpstreamPool(server.origin, max_connections=1, timeout_s=2.5)
            first = asyncio.create_task(infer(pool, "a"))
            # The first request holds the only connection for the whole wait below.
            await server.wait_for_connections(1)
            with pytest.raises(BackendTimeout, match="no connection to upstream"):
                await pool.request("POST", INFER, body_for("b"), timeout_s=0.3)
            assert server.accepted == 1
            with pytest.raises(BackendTimeout, match=r"did not answer within 2\.5 s"):
                await first
            await pool.close()

    run(main())


@pytest.mark.parametrize("framing", ["chunked", "eof"])
def test_chunked_and_close_delimited_bodies_are_read_whole(run: Run, framing: str) -> None:
    async def main() -> None:
        async with OipTestServer(framing=framing) as server:
            pool = UpstreamPool(server.origin)
            for i in range(3):
                response = await pool.request("POST", INFER, body_for(f"r{i}", rows=50))
                assert response.status == 200
                document = orjson.loads(response.body)
                assert document["outputs"][0]["data"] == [10.0] * 50
                assert document["id"] == f"r{i}"
            # An answer framed by the end of the connection cannot leave it reusable.
            assert server.accepted == (3 if framing == "eof" else 1)
            await pool.close()

    run(main())


def test_an_answer_arriving_byte_by_byte_after_100_continue(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(trickle=True, interim=True, framing="chunked") as server:
            pool = UpstreamPool(server.origin)
            assert await infer(pool, "slowly") == "slowly"
            assert await infer(pool, "again") == "again"
            assert server.accepted == 1
            await pool.close()

    run(main())


def test_large_bodies_both_ways(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer() as server:
            pool = UpstreamPool(server.origin)
            rows = 40_000
            response = await pool.request("POST", INFER, body_for("big", rows=rows))
            assert len(server.received[0].body) > 500_000
            assert orjson.loads(response.body)["outputs"][0]["data"] == [10.0] * rows
            assert len(response.body) > 100_000
            await pool.close()

    run(main())


def test_headers_reach_the_server(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer() as server:
            pool = UpstreamPool(server.origin, headers={"Authorization": "Bearer abc"})
            response = await pool.request(
                "POST", INFER, body_for("h"), headers={"X-Request-Id": "h-1"}
            )
            assert response.header("content-type") == "application/json"
            assert response.header("Content-Length") == str(len(response.body))
            assert response.header("x-missing") is None
            await pool.request("GET", "/v2/health/ready")
            post, get = server.received
            assert post.headers["authorization"] == "Bearer abc"
            assert post.headers["x-request-id"] == "h-1"
            assert post.headers["host"] == f"127.0.0.1:{server.port}"
            assert post.headers["content-length"] == str(len(post.body))
            assert get.method == "GET"
            assert get.headers["authorization"] == "Bearer abc"
            assert "x-request-id" not in get.headers
            await pool.close()

    run(main())


def test_any_status_is_returned_to_the_caller(run: Run) -> None:
    async def main() -> None:
        model = Model(fail_status=500)
        async with OipTestServer(model=model) as server:
            pool = UpstreamPool(server.origin)
            status, _headers, body = await pool.request("POST", INFER, body_for("x"))
            assert status == 500
            assert orjson.loads(body) == {"error": "model exploded"}
            # An error answer with a length keeps the connection.
            await pool.request("POST", INFER, body_for("x"))
            assert server.accepted == 1
            await pool.close()

    run(main())


def test_connection_refused_is_a_backend_error(run: Run) -> None:
    async def main() -> None:
        pool = UpstreamPool(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(BackendError, match="cannot connect to upstream") as caught:
            await pool.request("GET", "/v2/health/ready")
        assert not isinstance(caught.value, BackendTimeout)
        assert pool.open_connections == 0
        await pool.close()

    run(main())


def test_closing_the_pool_closes_every_socket(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(delay_s=0.01) as server:
            pool = UpstreamPool(server.origin, max_connections=8)
            await asyncio.gather(*(infer(pool, f"r{i}") for i in range(16)))
            assert server.open_connections == 8
            await pool.close()
            assert pool.open_connections == 0
            await server.wait_for_connections(0)
            assert server.open_connections == 0
            with pytest.raises(BackendError, match="closed"):
                await infer(pool, "after")

    run(main())


def test_closing_the_pool_fails_requests_in_flight(run: Run) -> None:
    async def main() -> None:
        async with OipTestServer(delay_s=5.0) as server:
            pool = UpstreamPool(server.origin, max_connections=1)
            tasks = [asyncio.ensure_future(infer(pool, f"r{i}")) for i in range(3)]
            await settle(lambda: server.requests > 0)
            await pool.close()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, BackendError) for r in results), results

    run(main())


@pytest.mark.parametrize(
    "origin",
    ["https://127.0.0.1:1", "http://127.0.0.1:1/prefix", "ftp://x", "http://:80", "http://h:x"],
)
def test_only_plain_http_origins_are_accepted(origin: str) -> None:
    with pytest.raises(ValueError):
        UpstreamPool(origin)


@pytest.mark.parametrize(
    "headers",
    [{"Bad Name": "x"}, {"X-Ok": "line\r\nInjected: 1"}, {"Content-Length": "3"}, {"Host": "h"}],
)
def test_header_injection_and_framing_headers_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        UpstreamPool("http://127.0.0.1:1", headers=headers)


def test_bad_request_targets_are_refused(run: Run) -> None:
    async def main() -> None:
        pool = UpstreamPool("http://127.0.0.1:1")
        for method, path in [("GET", "no-slash"), ("GET", "/a b"), ("HEAD", "/"), ("G T", "/")]:
            with pytest.raises(ValueError):
                await pool.request(method, path)
        await pool.close()

    run(main())
