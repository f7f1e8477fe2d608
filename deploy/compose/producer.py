"""Sample producer of deploy/compose: orders to Kafka, inventory changes to MongoDB.

Every INTERVAL seconds it writes one order (JSON value, keyed by customer, with a `type`
header that the bridge's `orders` route uses as the SSE event name) to the Kafka topic
TOPIC, and one change (insert, stock update, price replace or delete) to MongoDB's
shop.inventory, which the `inventory` route streams.

Environment: KAFKA_BOOTSTRAP (host:port, default kafka:9092), TOPIC (default orders),
MONGO_URI (default mongodb://mongo:27017/?replicaSet=rs0; empty: Kafka only), INTERVAL
(seconds, default 1), COUNT (orders to write, then exit; default 0: until stopped).
"""
import datetime
import json
import os
import random
import signal
import sys
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "kafka:9092")
TOPIC = os.environ.get("TOPIC", "orders")
MONGO_URI = os.environ.get("MONGO_URI", "mongodb://mongo:27017/?replicaSet=rs0")
INTERVAL = float(os.environ.get("INTERVAL", "1"))
COUNT = int(os.environ.get("COUNT", "0"))

CUSTOMERS = ["alice", "bob", "carol", "dave", "erin"]
ITEMS = {"widget": 4.5, "gadget": 12.0, "sprocket": 0.75, "gizmo": 30.0, "doohickey": 7.25}

running = True


def stop(*_):
    global running
    running = False


def ensure_topic():
    """Creates TOPIC (3 partitions) unless it exists; waits for the broker up to a minute."""
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    deadline = time.monotonic() + 60
    while True:
        try:
            if TOPIC in admin.list_topics(timeout=5).topics:
                return
            admin.create_topics([NewTopic(TOPIC, 3, 1)])[TOPIC].result(15)
            return
        except Exception as e:  # broker not up yet, or a concurrent creation
            if "TOPIC_ALREADY_EXISTS" in str(e):
                return
            if time.monotonic() > deadline:
                raise
            print(f"waiting for Kafka at {BOOTSTRAP}: {e}", file=sys.stderr)
            time.sleep(2)


def order():
    lines = [{"item": i, "qty": random.randint(1, 5), "price": ITEMS[i]}
             for i in random.sample(sorted(ITEMS), random.randint(1, 3))]
    return {
        "id": str(uuid.uuid4()),
        "customer": random.choice(CUSTOMERS),
        "lines": lines,
        "total": round(sum(l["qty"] * l["price"] for l in lines), 2),
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }


class Inventory:
    """Keeps shop.inventory changing: inserts, stock updates, replaces and deletes."""

    def __init__(self, uri):
        import pymongo

        self.items = pymongo.MongoClient(uri, serverSelectionTimeoutMS=30000).shop.inventory
        self.live = [d["_id"] for d in self.items.find({}, {"_id": 1})]

    def change(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        r = random.random()
        if r < 0.3 or len(self.live) < 3:
            name = random.choice(sorted(ITEMS))
            doc = {"name": name, "qty": random.randint(10, 100), "price": ITEMS[name], "updated": now}
            self.live.append(self.items.insert_one(doc).inserted_id)
        elif r < 0.8:
            self.items.update_one({"_id": random.choice(self.live)},
                                  {"$inc": {"qty": -random.randint(1, 5)}, "$set": {"updated": now}})
        elif r < 0.9:
            _id = random.choice(self.live)
            name = random.choice(sorted(ITEMS))
            self.items.replace_one({"_id": _id}, {"name": name, "qty": 0,
                                                  "price": round(ITEMS[name] * 1.1, 2), "updated": now})
        else:
            self.items.delete_one({"_id": self.live.pop(random.randrange(len(self.live)))})


def main():
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ensure_topic()
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 5})
    inventory = Inventory(MONGO_URI) if MONGO_URI else None
    sent = 0
    print(f"writing to Kafka {BOOTSTRAP} topic {TOPIC}"
          + (f" and MongoDB shop.inventory" if inventory else "") + f" every {INTERVAL}s", flush=True)
    while running and (COUNT == 0 or sent < COUNT):
        o = order()
        kind = random.choice(["order.created", "order.created", "order.paid"])
        producer.produce(TOPIC, key=o["customer"], value=json.dumps(o), headers=[("type", kind)])
        producer.poll(0)
        sent += 1
        if inventory:
            inventory.change()
        time.sleep(INTERVAL)
    left = producer.flush(15)
    print(f"{sent} orders written", flush=True)
    sys.exit(1 if left else 0)


if __name__ == "__main__":
    main()
