"""The async Python client for the Hivekit protocol, as used by the hivectl CLI.

```python
async with HivekitClient("ws://127.0.0.1:8765/ws", token) as client:
    london = await client.realm.get("london")
    rider = await london.object.get("deliveryRiders/johndoe-123")
    rider.connection_status                      # "connected" / "disconnected"
    await london.pubsub.subscribe("connectionStatusChanged", on_change,
                                  id_pattern="deliveryRiders/*")
```
"""

from hivectl.client.api import HivekitClient, HiveObject, Realm
from hivectl.client.errors import AuthenticationError, ConnectionLost, HivekitError

__all__ = [
    "AuthenticationError",
    "ConnectionLost",
    "HiveObject",
    "HivekitClient",
    "HivekitError",
    "Realm",
]
