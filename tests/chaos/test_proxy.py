"""The per-link proxy: forwards, cuts (resets open connections, refuses new ones), heals, slows.

Given an echo server and a ``Link`` in front of it (real loopback sockets, chaos ports),
When bytes go through, the link is cut, healed, and slowed,
Expect the echo back; then a reset on the open connection and every new connect refused; then
echoes again (the port bound anew); then each round trip taking at least twice the delay
(both directions are delayed). And When a link is muted, Expect what the dialer sends to
arrive while the answers are lost, and the heal to reset the connection that lost them.
"""

from __future__ import annotations

import pytest
import trio

from chaos.ports import PortPool
from chaos.proxy import Link, Network


async def echo(stream: trio.SocketStream) -> None:
    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


async def roundtrip(stream: trio.SocketStream, data: bytes) -> bytes:
    await stream.send_all(data)
    got = b""
    while len(got) < len(data):
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise trio.BrokenResourceError("closed")
        got += chunk
    return got


async def broken(stream: trio.SocketStream) -> bool:
    try:
        with trio.fail_after(2):
            await roundtrip(stream, b"x")
    except (trio.BrokenResourceError, OSError):
        return True
    return False


@pytest.mark.slow
async def test_a_link_forwards_cuts_heals_and_slows():
    pool = PortPool()
    target, front = pool.take(), pool.take()
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_tcp, echo, target)
        link = Link("a->b", target)
        assert await nursery.start(link.serve, front) == front

        stream = await trio.open_tcp_stream("127.0.0.1", front)
        assert await roundtrip(stream, b"hello" * 1000) == b"hello" * 1000

        link.cut()
        assert await broken(stream)
        for _ in range(3):  # the port is closed: refused, as by a member that is down
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.1", front)

        link.heal()
        await link.wait_listening()
        stream = await trio.open_tcp_stream("127.0.0.1", front)
        assert await roundtrip(stream, b"again") == b"again"

        link.slow(0.15)
        start = trio.current_time()
        assert await roundtrip(stream, b"slow") == b"slow"
        assert trio.current_time() - start >= 0.3
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_a_muted_link_delivers_requests_loses_answers_and_resets_at_the_heal():
    pool = PortPool()
    target, front = pool.take(), pool.take()
    arrived: list[bytes] = []

    async def record(stream: trio.SocketStream) -> None:
        try:
            while data := await stream.receive_some(65536):
                arrived.append(data)
                await stream.send_all(data)
        except trio.BrokenResourceError:  # the heal resets the proxy's side too
            pass

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_tcp, record, target)
        link = Link("a->db", target)
        await nursery.start(link.serve, front)
        stream = await trio.open_tcp_stream("127.0.0.1", front)
        assert await roundtrip(stream, b"before") == b"before"

        # When the link is muted, Expect the request to arrive and no answer within 0.5 s
        link.mute()
        await stream.send_all(b"commit")
        with trio.move_on_after(0.5) as waited:
            await stream.receive_some(65536)
        assert waited.cancelled_caught
        assert arrived == [b"before", b"commit"]
        assert Network({("a", "db"): link}).faulted

        # When it heals, Expect the connection that lost the answer reset, and a new one to work
        link.heal()
        assert await broken(stream)
        stream = await trio.open_tcp_stream("127.0.0.1", front)
        assert await roundtrip(stream, b"after") == b"after"
        nursery.cancel_scope.cancel()


async def test_a_network_cuts_the_links_a_partition_names():
    links = {(a, b): Link(f"{a}->{b}", 1) for a in "xyz" for b in "xyz" if a != b}
    net = Network(links)
    assert sorted(net.isolate("x")) == ["x->y", "x->z", "y->x", "z->x"]
    net.heal()
    assert not net.faulted
    assert sorted(net.split([["x"], ["y", "z"]])) == ["x->y", "x->z", "y->x", "z->x"]
    net.heal()
    assert sorted(net.one_way(["y"], ["x", "y", "z"])) == ["y->x", "y->z"]
    assert links[("y", "x")].is_cut and not links[("x", "y")].is_cut
    net.heal()
    net.slow(0.1)
    assert net.faulted and all(link.delay == 0.1 for link in links.values())


@pytest.mark.slow
async def test_a_link_into_a_dead_member_refuses_until_the_member_listens_again():
    # Given a link whose destination is down (killed), Expect connects refused, not reset
    pool = PortPool()
    target, front = pool.take(), pool.take()
    async with trio.open_nursery() as nursery:
        link = Link("a->b", target)
        await nursery.start(link.serve, front)
        link.target_down()
        link.target_up()  # restarted, but its port is not bound yet
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", front)
        assert link.accepted == 0
        # When the destination listens again, Expect the link to follow and forward
        await nursery.start(trio.serve_tcp, echo, target)
        await link.wait_listening()
        stream = await trio.open_tcp_stream("127.0.0.1", front)
        assert await roundtrip(stream, b"back") == b"back"
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_a_link_that_finds_its_destination_dead_refuses_until_it_is_back():
    # Given a link nobody told that its destination is down
    pool = PortPool()
    target, front = pool.take(), pool.take()
    async with trio.open_nursery() as nursery:
        link = Link("a->b", target)
        await nursery.start(link.serve, front)
        # When a first connect gets through the proxy and finds nothing behind it
        first = await trio.open_tcp_stream("127.0.0.1", front)
        assert await broken(first)
        # Expect the link to refuse from then on, and to forward again once the member is back
        assert not link.wanted  # marked before that connection was reset
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", front)
        await nursery.start(trio.serve_tcp, echo, target)
        await link.wait_listening()
        stream = await trio.open_tcp_stream("127.0.0.1", front)
        assert await roundtrip(stream, b"again") == b"again"
        nursery.cancel_scope.cancel()
