"""The demo's MongoDB writer: keeps an `inventory` collection changing (inserts, updates,
replaces, deletes) so the demo's `inventory` route has something to stream."""
import datetime
import random
import sys
import time

import pymongo

uri = sys.argv[1]
client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
items = client.demo.inventory
names = ["widget", "gadget", "sprocket", "gizmo", "doohickey"]
live = []
while True:
    r = random.random()
    if r < 0.4 or len(live) < 3:
        doc = {"name": random.choice(names), "qty": random.randint(1, 50),
               "price": round(random.uniform(1, 100), 2),
               "updated": datetime.datetime.now(datetime.timezone.utc)}
        live.append(items.insert_one(doc).inserted_id)
    elif r < 0.75:
        items.update_one({"_id": random.choice(live)},
                         {"$inc": {"qty": random.randint(-5, 5)},
                          "$set": {"updated": datetime.datetime.now(datetime.timezone.utc)}})
    elif r < 0.85:
        _id = random.choice(live)
        items.replace_one({"_id": _id}, {"name": random.choice(names), "qty": 0,
                                         "updated": datetime.datetime.now(datetime.timezone.utc)})
    else:
        _id = live.pop(random.randrange(len(live)))
        items.delete_one({"_id": _id})
    time.sleep(0.7)
