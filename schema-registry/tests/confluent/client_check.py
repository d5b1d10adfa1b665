"""Drives the registry with Confluent's own Python client (confluent-kafka), as a user would.

Usage: client_check.py REGISTRY_URL BOOTSTRAP_SERVERS
Run by tests/confluent_python.rs against a real registry on a real Tansu broker. Prints one
line per check and exits non-zero on the first failure.
"""

import sys
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

URL, BOOTSTRAP = sys.argv[1], sys.argv[2]
client = SchemaRegistryClient({"url": URL})

V1 = """{"type":"record","name":"Payment","namespace":"check",
 "fields":[{"name":"id","type":"string"},
           {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}}]}"""
V2 = """{"type":"record","name":"Payment","namespace":"check",
 "fields":[{"name":"id","type":"string"},
           {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
           {"name":"note","type":"string","default":""}]}"""
BAD = """{"type":"record","name":"Payment","namespace":"check",
 "fields":[{"name":"id","type":"string"},{"name":"required","type":"int"}]}"""


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name} {detail}")
        sys.exit(1)
    print(f"ok   {name}")


def error_code(call):
    try:
        call()
    except SchemaRegistryError as e:
        return e.error_code
    return None


subject = "payments-value"
id1 = client.register_schema(subject, Schema(V1, "AVRO"))
check("register returns an id", isinstance(id1, int) and id1 > 0, id1)
check("registering again returns the same id", client.register_schema(subject, Schema(V1, "AVRO")) == id1)
check("get_schema by id", "Payment" in client.get_schema(id1).schema_str)
latest = client.get_latest_version(subject)
check("latest version", latest.version == 1 and latest.schema_id == id1, latest)
check("lookup_schema", client.lookup_schema(subject, Schema(V1, "AVRO")).version == 1)
check("compatible evolution", client.test_compatibility(subject, Schema(V2, "AVRO")) is True)
check("incompatible evolution", client.test_compatibility(subject, Schema(BAD, "AVRO")) is False)
check("incompatible registration is 409", error_code(lambda: client.register_schema(subject, Schema(BAD, "AVRO"))) == 409)
id2 = client.register_schema(subject, Schema(V2, "AVRO"))
check("versions", client.get_versions(subject) == [1, 2] and id2 != id1)
check("subjects", subject in client.get_subjects())
check("unknown subject is 40401", error_code(lambda: client.get_latest_version("nope-value")) == 40401)
check("unknown id is 40403", error_code(lambda: client.get_schema(9999)) == 40403)
client.set_compatibility(subject, "FULL")
check("subject compatibility", client.get_compatibility(subject) == "FULL")

# Serialize with Confluent's AvroSerializer, through a real topic, and back.
topic = "payments"
admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
    future.result(15)
# A fresh client: the first one cached "latest" before v2 existed.
serializer = AvroSerializer(SchemaRegistryClient({"url": URL}), V2, conf={"auto.register.schemas": False, "use.latest.version": True})
deserializer = AvroDeserializer(SchemaRegistryClient({"url": URL}))
from decimal import Decimal  # noqa: E402

record = {"id": "p-1", "amount": Decimal("1999.98"), "note": "exact to the cent"}
context = SerializationContext(topic, MessageField.VALUE)
payload = serializer(record, context)
check("wire format: magic byte and schema id", payload[0] == 0 and int.from_bytes(payload[1:5], "big") == id2, payload[:5])
producer = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True, "acks": "all"})
producer.produce(topic, key=b"p-1", value=payload)
check("produced and acknowledged", producer.flush(15) == 0)
consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": str(uuid.uuid4()), "fetch.wait.max.ms": 10})
consumer.assign([TopicPartition(topic, 0, 0)])
message = None
for _ in range(100):
    message = consumer.poll(0.2)
    if message is not None and message.error() is None:
        break
check("consumed", message is not None and message.error() is None)
decoded = deserializer(message.value(), context)
check("decoded exactly", decoded == record, decoded)
consumer.close()

check("soft delete returns versions", client.delete_subject(subject) == [1, 2])
check("permanent delete", client.delete_subject(subject, permanent=True) == [1, 2])
check("subject gone", subject not in client.get_subjects())
print("confluent client checks passed")
