"""The async Python client for the Hivekit protocol, as used by the hivectl CLI.

```python
async with HivekitClient("ws://127.0.0.1:8765/ws", token) as client:
    london = await client.realm.get("london")
    rider = await london.object.get("deliveryRiders/johndoe-123")
    rider.connection_status                      # "connected" / "disconnected"
    await london.pubsub.subscribe("connectionStatusChanged", on_change,
                                  id_pattern="deliveryRiders/*")
    nearby = await london.object.subscribe(shape={"cx": -0.12, "cy": 51.5, "r": 500},
                                           where=['type="rider"'], execute_immediately=True)
    nearby.objects                               # {id: HiveObject}, kept current
```
"""

from hivectl.client.api import HivekitClient, Realm
from hivectl.client.connection import CloseInfo
from hivectl.client.errors import AuthenticationError, ConnectionLost, HivekitError
from hivectl.client.objects import HiveObject
from hivectl.client.subscriptions import ObjectSubscription, RealmSubscription, SubscriptionChange

__all__ = [
    "AuthenticationError",
    "CloseInfo",
    "ConnectionLost",
    "HiveObject",
    "HivekitClient",
    "HivekitError",
    "ObjectSubscription",
    "Realm",
    "RealmSubscription",
    "SubscriptionChange",
]
