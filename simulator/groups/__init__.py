"""Consumer services: consumer groups of instances reading from the broker.

Two delivery modes, so they can be compared: ``stream`` (:mod:`.stream`, a Kafka consumer
group) and ``queue`` (:mod:`.queue`, a RabbitMQ queue with competing consumers). What they share
is in :mod:`.base`; dead letters and redrive in :mod:`.failures`; Kafka's partition assignors in
:mod:`.assignors`.
"""

from .base import BACKOFF, BUSY, DEAD, IDLE, ConsumerGroup, Host, Instance
from .failures import DeadLetter
from .queue import QueueGroup
from .stream import Cursor, StreamGroup

__all__ = [
    "BACKOFF",
    "BUSY",
    "DEAD",
    "IDLE",
    "ConsumerGroup",
    "Cursor",
    "DeadLetter",
    "Host",
    "Instance",
    "QueueGroup",
    "StreamGroup",
]
