"""The Celery app both sides load: the agent's producers (``.delay()``) and the worker
(``celery -A bench.peers.celery_app worker``).

Broker from ``TASKD_PEERS_BROKER`` (redis: the recording DB's URL; rabbitmq: the AMQP URL).
Celery's defaults except: one dedicated queue, exchange and routing key (``TASKD_PEERS_QUEUE``,
so cleaning it touches nothing else), results ignored (the tasks record in Redis themselves),
no remote control, gossip, mingle or events (no extra queues or traffic).
"""

from __future__ import annotations

from celery import Celery

from bench.peers import jobs

settings = jobs.Settings.from_env()
app = Celery(
    "taskd_peers",
    broker=settings.redis_url if settings.broker == "redis" else settings.amqp_url,
    set_as_current=False,
)
app.conf.update(
    task_default_queue=settings.queue,
    task_default_exchange=settings.queue,
    task_default_routing_key=settings.queue,
    task_ignore_result=True,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
)
noop = app.task(name="taskd_peers.noop")(jobs.noop)
count = app.task(name="taskd_peers.count")(jobs.count)
pickup = app.task(name="taskd_peers.pickup")(jobs.pickup)
