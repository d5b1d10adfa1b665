"""Confluent's Python client on the orders topic, as a third party would use it.

Usage: confluent_orders.py read REGISTRY_URL BOOTSTRAP      -> prints every record as JSON lines
       confluent_orders.py write REGISTRY_URL BOOTSTRAP ID  -> writes one order with Confluent's
                                                              AvroSerializer, using the latest
                                                              registered schema
"""

import json
import sys
import uuid
from datetime import datetime, timezone
from decimal import Decimal

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

TOPIC = "order-events"
mode, url, bootstrap = sys.argv[1], sys.argv[2], sys.argv[3]
client = SchemaRegistryClient({"url": url})
context = SerializationContext(TOPIC, MessageField.VALUE)


def plain(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


if mode == "read":
    deserializer = AvroDeserializer(client)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": str(uuid.uuid4()),
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    metadata = consumer.list_topics(TOPIC, timeout=10)
    ends = {}
    for p in metadata.topics[TOPIC].partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)
        if high > low:
            ends[p] = high
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in ends])
    while ends:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        value = deserializer(message.value(), context)
        # CartService's partition claims (order_events::fencing) have no key and no value: to
        # a Confluent consumer they are null records, skipped like tombstones.
        if value is not None:
            print(json.dumps({"key": message.key().decode(), "value": plain(value)}))
        if message.offset() + 1 >= ends.get(message.partition(), 0):
            ends.pop(message.partition(), None)
    consumer.close()
elif mode == "write":
    order_id = sys.argv[4]
    latest = client.get_latest_version(f"{TOPIC}-value")
    serializer = AvroSerializer(client, latest.schema.schema_str,
                                conf={"auto.register.schemas": False, "use.latest.version": True})
    now = datetime.now(timezone.utc).replace(microsecond=0)
    record = {
        "eventId": str(uuid.uuid4()), "eventType": "ORDER_CREATED", "version": 1,
        "occurredAt": now, "orderId": order_id, "customerId": "CUST-PY",
        "orderDate": now,
        "items": [{"itemId": "PY-1", "quantity": 3, "price": Decimal("333.33")}],
        "totalAmount": Decimal("999.99"), "currency": "EUR", "status": "pending",
    }
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    producer.produce(TOPIC, key=order_id.encode(), value=serializer(record, context))
    if producer.flush(15) != 0:
        sys.exit("not acknowledged")
    print("written")
