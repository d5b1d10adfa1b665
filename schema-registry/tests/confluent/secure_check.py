"""Confluent's Python client against the registry over https with basic auth, as a user would.

Usage: secure_check.py REGISTRY_URL CA_FILE READ_WRITE_USER_INFO READ_ONLY_USER_INFO
Run by tests/security.rs against a registry serving HTTPS with a certificate of a test CA and a
users file. Prints one line per check and exits non-zero on the first failure.
"""

import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

URL, CA, READ_WRITE, READ_ONLY = sys.argv[1:5]

SCHEMA = """{"type":"record","name":"Payment","namespace":"secure",
 "fields":[{"name":"id","type":"string"}]}"""


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name} {detail}")
        sys.exit(1)
    print(f"ok   {name}")


def failure(call):
    """The SchemaRegistryError a call raises, or None."""
    try:
        call()
    except SchemaRegistryError as e:
        return e
    return None


def client(user_info=None, ca=CA):
    conf = {"url": URL}
    if ca is not None:
        conf["ssl.ca.location"] = ca
    if user_info is not None:
        conf["basic.auth.user.info"] = user_info
    return SchemaRegistryClient(conf)


writer = client(READ_WRITE)
subject = "secure-payments-value"
schema_id = writer.register_schema(subject, Schema(SCHEMA, "AVRO"))
check("read-write user registers over https", isinstance(schema_id, int) and schema_id > 0, schema_id)
check("and reads the schema back", "Payment" in writer.get_schema(schema_id).schema_str)
check("latest version", writer.get_latest_version(subject).schema_id == schema_id)

reader = client(READ_ONLY)
check("read-only user reads", reader.get_latest_version(subject).schema_id == schema_id)
check("read-only user looks up", reader.lookup_schema(subject, Schema(SCHEMA, "AVRO")).version == 1)
denied = failure(lambda: reader.register_schema(subject, Schema(SCHEMA.replace("Payment", "Other"), "AVRO")))
check(
    "read-only user cannot register (403, 40301)",
    denied is not None and denied.http_status_code == 403 and denied.error_code == 40301,
    denied,
)
denied = failure(lambda: reader.delete_subject(subject))
check("read-only user cannot delete (403)", denied is not None and denied.http_status_code == 403, denied)

anonymous = failure(lambda: client().get_subjects())
check(
    "anonymous is 401 with Confluent's body",
    anonymous is not None and anonymous.http_status_code == 401 and anonymous.error_code == 401,
    anonymous,
)
user = READ_WRITE.split(":", 1)[0]
wrong = failure(lambda: client(f"{user}:not-the-password").get_subjects())
check("a wrong password is 401", wrong is not None and wrong.http_status_code == 401, wrong)

try:
    client(READ_WRITE, ca=None).get_subjects()
    untrusted = None
except SchemaRegistryError as e:
    untrusted = e
except Exception as e:  # the TLS handshake fails before any HTTP answer
    untrusted = e
check(
    "without the CA the client refuses the certificate",
    untrusted is not None and "CERTIFICATE_VERIFY_FAILED" in str(untrusted),
    repr(untrusted),
)

check("read-write user deletes", writer.delete_subject(subject) == [1])
check("and deletes permanently", writer.delete_subject(subject, permanent=True) == [1])
print("confluent secure client checks passed")
