"""The Dramatiq broker and actors both sides load: the agent's producers (``.send()``) and the
worker (``dramatiq bench.peers.dramatiq_app``).

Broker from ``TASKD_PEERS_BROKER``: ``RedisBroker`` on the recording DB (namespace
``taskd-peers``) or ``RabbitmqBroker`` on the AMQP URL; Dramatiq's default middleware, actors on
one dedicated queue (``TASKD_PEERS_QUEUE``), no retries (a no-op does not fail).
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from bench.peers import jobs

settings = jobs.Settings.from_env()
broker = (
    RedisBroker(url=settings.redis_url, namespace="taskd-peers")
    if settings.broker == "redis"
    else RabbitmqBroker(url=settings.amqp_url)
)
dramatiq.set_broker(broker)
_options = {"queue_name": settings.queue, "max_retries": 0}
noop = dramatiq.actor(jobs.noop, actor_name="taskd_peers_noop", **_options)
count = dramatiq.actor(jobs.count, actor_name="taskd_peers_count", **_options)
pickup = dramatiq.actor(jobs.pickup, actor_name="taskd_peers_pickup", **_options)
