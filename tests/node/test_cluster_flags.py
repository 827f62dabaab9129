"""The cluster flags: ``--peers``, ``--grpc``, ``--join``, ``--cluster-secret``, ``--peer-route``,
``--election-timeout`` — normalised members, which one is this node, and errors that name the
flag and what to write."""

from __future__ import annotations

import pytest

from taskd.node import members
from taskd.node.config import ConfigError, load

SECRET = "s" * 32


def nowhere(host: str) -> bool:
    return False


def test_several_members_are_normalised_and_this_node_is_grpc() -> None:
    # Given three members written loosely
    config = load(["--peers", " a , B:7001,10.0.0.3 ", "--grpc", "b:7001"], {}, is_local=nowhere)
    # Expect host:port with the default port, and this node the entry equal to --grpc
    assert config.peers == ("a:50051", "b:7001", "10.0.0.3:50051")
    assert config.grpc == config.node_id == "b:7001"
    assert config.clustered


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host", "host:50051"),
        ("Host.Example:80", "host.example:80"),
        ("[::1]", "[::1]:50051"),
        ("[::1]:7000", "[::1]:7000"),
        ("::1", "[::1]:50051"),
        ("127.0.0.1:22001", "127.0.0.1:22001"),
    ],
)
def test_addresses_normalise_to_host_port(text: str, expected: str) -> None:
    assert members.normalize(text, "--peers") == expected


def test_no_peers_is_a_single_node_and_one_peer_a_cluster_of_one() -> None:
    alone = load([], {})
    assert alone.grpc == "127.0.0.1:50051" and not alone.clustered
    one = load(["--peers", "127.0.0.1:9000"], {})
    assert one.grpc == "127.0.0.1:9000" and one.clustered  # it may grow: taskd cluster add


def test_without_grpc_this_node_is_the_one_local_entry() -> None:
    # Given members on three machines, one of which is this one
    config = load(["--peers", "a,b,c"], {}, is_local=lambda host: host == "b")
    # Expect this node to be b
    assert config.grpc == "b:50051"


@pytest.mark.parametrize(
    ("is_local", "message"),
    [
        (nowhere, "none of --peers .* is an address of this machine; pass --grpc"),
        (lambda host: True, "several entries of --peers .* pass --grpc"),
    ],
)
def test_without_grpc_an_unclear_self_asks_for_grpc(is_local: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(["--peers", "a,b,c"], {}, is_local=is_local)  # type: ignore[arg-type]


def test_the_real_local_check_knows_loopback() -> None:
    assert members.is_local("127.0.0.1")
    assert not members.is_local("192.0.2.1")  # TEST-NET-1: never an address of this machine


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--peers", "a,b", "--grpc", "c"], {}, r"--grpc c:50051 is not one of --peers"),
        (["--peers", "a,b,a:50051"], {}, r"--peers names a:50051 twice"),
        (["--peers", "a,b:0"], {}, r"--peers: the port of 'b:0' must be 1-65535"),
        (["--peers", "a,b:x"], {}, r"--peers: the port of 'b:x' must be 1-65535"),
        (["--peers", "a,http://b"], {}, r"--peers wants host\[:port\]"),
        (["--peers", "a,[zz]:1"], {}, r"--peers wants host\[:port\]"),
        (["--grpc", "a b"], {}, r"--grpc wants host\[:port\]"),
        (["--join"], {}, r"--join needs --grpc"),
        (["--peer-route", "a"], {}, r"--peer-route wants MEMBER=HOST:PORT"),
        (["--peer-route", "a=b:0"], {}, r"--peer-route \(target\): the port"),
        (
            ["--peer-route", "a=b:1", "--peer-route", "a:50051=c:2"],
            {},
            "names member a:50051 twice",
        ),
        (["--election-timeout", "0.01"], {}, r"--election-timeout must be 0.1-60 seconds"),
        ([], {"TASKD_ELECTION_TIMEOUT": "soon"}, r"--election-timeout .*bad value 'soon'"),
        (["--cluster-secret", "short"], {}, r"--cluster-secret .* at least 16 characters"),
        ([], {"TASKD_JOIN": "maybe"}, r"TASKD_JOIN: bad value 'maybe'"),
    ],
)
def test_bad_cluster_flags_name_the_flag(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(argv, env, is_local=nowhere)


def test_join_may_name_an_address_outside_peers() -> None:
    # Given a fourth node being added to a,b,c
    config = load(["--join", "--grpc", "d", "--peers", "a,b,c"], {}, is_local=nowhere)
    # Expect it to know itself and the members it may talk to
    assert config.join and config.grpc == "d:50051" and config.clustered
    assert config.peers == ("a:50051", "b:50051", "c:50051")


def test_secret_routes_and_timeout_from_flags_or_environment() -> None:
    env = {
        "TASKD_CLUSTER_SECRET": SECRET,
        "TASKD_PEER_ROUTE": "a=127.0.0.1:23001, b:50051=127.0.0.1:23002",
        "TASKD_ELECTION_TIMEOUT": "0.3",
        "TASKD_PEERS": "a,b,c",
        "TASKD_GRPC": "c",
    }
    config = load([], env, is_local=nowhere)
    assert config.cluster_secret == SECRET
    assert config.peer_routes == (
        ("a:50051", "127.0.0.1:23001"),
        ("b:50051", "127.0.0.1:23002"),
    )
    assert config.election_timeout == 0.3
    # flags win over the environment, and --peer-route repeats
    flags = load(["--peer-route", "c=127.0.0.1:9", "--election-timeout", "2s"], env)
    assert flags.peer_routes == (("c:50051", "127.0.0.1:9"),)
    assert flags.election_timeout == 2.0
    # no secret unless given; an empty variable is none
    assert load([], {"TASKD_CLUSTER_SECRET": ""}).cluster_secret is None
