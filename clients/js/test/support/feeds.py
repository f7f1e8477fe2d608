"""Writes to the test broker and replica set for the client's tests (run with the
project's venv, which scripts/test fills: confluent-kafka and pymongo).

  feeds.py topic   BROKERS TOPIC PARTITIONS
  feeds.py delete  BROKERS TOPIC
  feeds.py produce BROKERS TOPIC FIRST COUNT PARTITIONS DELAY_MS
      records {"seq": i} for i in FIRST..FIRST+COUNT, to partition i % PARTITIONS
  feeds.py insert  URI DB COLLECTION FIRST COUNT DELAY_MS
      documents {"seq": i}
"""

import json
import sys
import time


def kafka_admin(brokers):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": brokers})


def main(cmd, *args):
    if cmd == "topic":
        from confluent_kafka.admin import NewTopic

        brokers, topic, partitions = args
        admin = kafka_admin(brokers)
        for f in admin.create_topics([NewTopic(topic, int(partitions), 1)]).values():
            f.result(30)
    elif cmd == "delete":
        brokers, topic = args
        admin = kafka_admin(brokers)
        for f in admin.delete_topics([topic]).values():
            f.result(30)
    elif cmd == "produce":
        from confluent_kafka import Producer

        brokers, topic, first, count, partitions, delay = args
        first, count, partitions, delay = int(first), int(count), int(partitions), int(delay)
        p = Producer({"bootstrap.servers": brokers, "linger.ms": 0, "enable.idempotence": True})
        failed = []
        for i in range(first, first + count):
            p.produce(topic, json.dumps({"seq": i}).encode(), partition=i % partitions,
                      on_delivery=lambda err, _m: err and failed.append(str(err)))
            p.poll(0)
            if delay:
                p.flush(30)
                time.sleep(delay / 1000)
        if p.flush(30) or failed:
            sys.exit(f"produce failed: {failed[:3]}")
    elif cmd == "insert":
        import pymongo

        uri, db, coll, first, count, delay = args
        c = pymongo.MongoClient(uri)[db][coll]
        for i in range(int(first), int(first) + int(count)):
            c.insert_one({"seq": i})
            if int(delay):
                time.sleep(int(delay) / 1000)
    else:
        sys.exit(f"unknown command {cmd}")


main(*sys.argv[1:])
